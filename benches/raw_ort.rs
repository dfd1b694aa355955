//! Raw ONNX Runtime throughput, the ceiling for `softlabel precompute`: the teacher's `Session::run`
//! over batches already in memory, in the teacher's input type, with no reading, conversion, softmax or
//! writing. The session has exactly softlabel's options (`teacher::session_builder`). Used by
//! scripts/bench; prints one JSON line.
//!
//!     cargo bench --bench raw_ort -- TEACHER.onnx DATA.parquet INPUT_COLUMN BATCH THREADS REPS

use std::time::Instant;

use ort::value::{TensorElementType, TensorRef};
use softlabel::data::{numeric_to_f32, DataSpec};
use softlabel::teacher::{session_builder, TeacherOptions};

/// One batch's values in the teacher's input type.
enum Values {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [teacher, data, column, batch, threads, reps] = &args[..] else {
        anyhow::bail!("usage: raw_ort TEACHER DATA INPUT_COLUMN BATCH THREADS REPS");
    };
    let (batch, threads, reps): (usize, usize, usize) = (batch.parse()?, threads.parse()?, reps.parse()?);
    let options = TeacherOptions { threads, ..Default::default() };
    let mut session = session_builder(&options)?.commit_from_file(teacher)?;
    let input = session.inputs()[0].name().to_string();
    let (ty, dims): (TensorElementType, Vec<i64>) = match session.inputs()[0].dtype() {
        ort::value::ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => anyhow::bail!("the teacher's input is {other:?}, not a tensor"),
    };
    // The batches, decoded and converted before the clock starts.
    let source = softlabel::data::open(std::path::Path::new(data), &DataSpec::new(column))?;
    let mut batches = Vec::new();
    for b in source.batches(batch) {
        let b = b?;
        let values = numeric_to_f32(b.input.as_ref()).ok_or_else(|| anyhow::anyhow!("input is not numeric"))?;
        let mut shape: Vec<usize> = vec![b.len()];
        shape.extend(dims[1..].iter().map(|&d| d as usize));
        if shape.iter().product::<usize>() != values.len() {
            shape = vec![b.len(), b.width];
        }
        batches.push(match ty {
            TensorElementType::Float32 => (shape, Values::F32(values)),
            TensorElementType::Uint8 => (shape, Values::U8(values.iter().map(|&v| v as u8).collect())),
            other => anyhow::bail!("raw_ort times float32 and uint8 teachers, this one takes {other:?}"),
        });
    }
    let rows: usize = batches.iter().map(|(s, _)| s[0]).sum();
    let mut rates = Vec::new();
    let mut checksum = 0f64;
    for _ in 0..reps {
        let start = Instant::now();
        for (shape, values) in &batches {
            let outputs = match values {
                Values::F32(v) => session
                    .run(ort::inputs![input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?])?,
                Values::U8(v) => session
                    .run(ort::inputs![input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?])?,
            };
            let (_, logits) = outputs[0].try_extract_tensor::<f32>()?;
            checksum += f64::from(logits[0]);
        }
        rates.push(rows as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"rows": rows, "rows_per_s_median": rates[rates.len() / 2], "rows_per_s": rates, "checksum": checksum})
    );
    Ok(())
}
