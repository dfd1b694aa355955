//! Raw ONNX Runtime throughput, the ceiling for `softlabel precompute`: the teacher's `Session::run`
//! over batches already in memory, in the teacher's input type, with no reading, conversion, softmax or
//! writing. The session has exactly softlabel's options (`teacher::session_builder`). Used by
//! scripts/bench; prints one JSON line (with `session_s`, the seconds the session took to create, not
//! timed in the rates).
//!
//!     cargo bench --bench raw_ort -- TEACHER.onnx DATA.parquet INPUT_COLUMN BATCH THREADS REPS [MASK_INPUT=PAD]
//!
//! With `MASK_INPUT=PAD` (a sequence teacher of token ids and an attention mask) the second input is fed
//! `id != PAD`, built before the clock starts, as `precompute --mask-input` feeds it.

use std::time::Instant;

use ort::value::{TensorElementType, TensorRef};
use softlabel::data::{numeric_to_f32, DataSpec};
use softlabel::teacher::{session_builder, TeacherOptions};

/// One batch's values in the teacher's input type.
enum Values {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (args, mask) = match &args[..] {
        [rest @ .., m] if args.len() == 7 => {
            let (name, pad) = m.split_once('=').ok_or_else(|| anyhow::anyhow!("MASK_INPUT=PAD, got {m}"))?;
            (rest.to_vec(), Some((name.to_string(), pad.parse::<i64>()?)))
        }
        _ => (args.clone(), None),
    };
    let [teacher, data, column, batch, threads, reps] = &args[..] else {
        anyhow::bail!("usage: raw_ort TEACHER DATA INPUT_COLUMN BATCH THREADS REPS [MASK_INPUT=PAD]");
    };
    let (batch, threads, reps): (usize, usize, usize) = (batch.parse()?, threads.parse()?, reps.parse()?);
    let options = TeacherOptions { threads, ..Default::default() };
    let started = Instant::now();
    let mut session = session_builder(&options)?.commit_from_file(teacher)?;
    let session_s = started.elapsed().as_secs_f64();
    let first = session.inputs().iter().position(|i| mask.as_ref().is_none_or(|(m, _)| i.name() != m)).unwrap_or(0);
    let input = session.inputs()[first].name().to_string();
    let (ty, dims): (TensorElementType, Vec<i64>) = match session.inputs()[first].dtype() {
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
            TensorElementType::Int32 => (shape, Values::I32(values.iter().map(|&v| v as i32).collect())),
            TensorElementType::Int64 => (shape, Values::I64(values.iter().map(|&v| v as i64).collect())),
            other => anyhow::bail!("raw_ort times float32, uint8, int32 and int64 teachers, this one takes {other:?}"),
        });
    }
    let rows: usize = batches.iter().map(|(s, _)| s[0]).sum();
    let masks: Vec<Vec<i64>> = batches
        .iter()
        .map(|(_, v)| match (v, &mask) {
            (Values::I64(ids), Some((_, pad))) => ids.iter().map(|&t| i64::from(t != *pad)).collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut rates = Vec::new();
    let mut checksum = 0f64;
    for _ in 0..reps {
        let start = Instant::now();
        for ((shape, values), m) in batches.iter().zip(&masks) {
            let outputs = match values {
                Values::I64(v) => match &mask {
                    Some((name, _)) => session.run(ort::inputs![
                        input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?,
                        name.as_str() => TensorRef::from_array_view((shape.clone(), m.as_slice()))?
                    ])?,
                    None => session.run(
                        ort::inputs![input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?],
                    )?,
                },
                Values::F32(v) => session
                    .run(ort::inputs![input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?])?,
                Values::U8(v) => session
                    .run(ort::inputs![input.as_str() => TensorRef::from_array_view((shape.clone(), v.as_slice()))?])?,
                Values::I32(v) => session
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
        serde_json::json!({"rows": rows, "rows_per_s_median": rates[rates.len() / 2], "rows_per_s": rates,
            "checksum": checksum, "session_s": session_s})
    );
    Ok(())
}
