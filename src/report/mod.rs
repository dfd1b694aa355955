//! `report`: what distillation bought. Teacher and student side by side: parameters, bytes on disk,
//! latency (batch 1, p50/p99) and throughput (batch 256) through ONNX Runtime with the same threads,
//! accuracy, agreement, KL and calibration; the ratios; and plots (SVG) of training curves, reliability
//! and the teacher's softmax at three temperatures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::data::{Batch, DataSpec, Source};
use crate::error::{Error, Result};
use crate::eval::{evaluate, EvalReport, ECE_BINS};
use crate::progress::Progress;
use crate::soften::{argmax, softmax_t};
use crate::store::{Outputs, SoftLabels, TeacherOutputs};
use crate::student::io::{load as load_student, StudentFile};
use crate::teacher::{Teacher, TeacherOptions};
use crate::util::write_atomic;

mod proto;
mod svg;

pub use proto::onnx_parameters;
pub(crate) use svg::svg_sweep;
use svg::{svg_reliability, svg_temperatures, svg_training};

/// Settings for a report.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// The teacher model.
    pub teacher: PathBuf,
    /// The student folder.
    pub student: PathBuf,
    /// Labeled test data.
    pub data: PathBuf,
    /// Which columns hold what.
    pub spec: DataSpec,
    /// Every input of a teacher with several, mapped to data columns (one of them the student's input,
    /// `spec.input`); empty for a teacher of one input.
    pub inputs: Vec<crate::config::teacher::InputMap>,
    /// The teacher's soft labels for the same rows (else the teacher is run on the data).
    pub labels: Option<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// ONNX Runtime threads for both models (0: all cores).
    pub threads: usize,
    /// Timed batch-1 runs per model.
    pub latency_runs: usize,
    /// Also export the student as int8 (calibrated on the inputs of the labels it learned from) and
    /// measure it beside the float one.
    pub int8: bool,
}

/// Size and speed of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    /// The ONNX file.
    pub file: String,
    /// Parameters (elements of the ONNX initializers).
    pub parameters: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Batch-1 latency, median, ms.
    pub latency_p50_ms: f64,
    /// Batch-1 latency, 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Rows per second at batch 256.
    pub throughput_rows_per_s: f64,
    /// Top-1 accuracy on the data.
    pub accuracy: Option<f64>,
    /// Expected calibration error (15 bins).
    pub ece: Option<f64>,
}

/// The int8 export of the student, measured on the same rows as the float one.
#[derive(Debug, Clone, Serialize)]
pub struct Int8Stats {
    /// Size, speed and accuracy of the int8 model.
    #[serde(flatten)]
    pub model: ModelStats,
    /// Rows where the int8 model's top class is the float student's.
    pub agreement_with_float: f64,
    /// Rows the int8 model got wrong (of the labeled ones).
    pub errors: Option<u64>,
    /// Calibration rows and where they came from.
    pub calibration: String,
}

/// The ratios users care about.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Teacher bytes / student bytes.
    pub smaller_x: f64,
    /// Teacher parameters / student parameters.
    pub fewer_parameters_x: f64,
    /// Teacher p50 latency / student p50 latency.
    pub latency_speedup_x: f64,
    /// Student throughput / teacher throughput.
    pub throughput_speedup_x: f64,
    /// Student accuracy / teacher accuracy, in percent.
    pub accuracy_kept_pct: Option<f64>,
}

/// The whole report (report.json).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// ONNX Runtime threads used for both models.
    pub threads: usize,
    /// Rows evaluated.
    pub rows: u64,
    /// The teacher.
    pub teacher: ModelStats,
    /// The student (exported to ONNX for timing).
    pub student: ModelStats,
    /// The student's int8 export (`--int8`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_int8: Option<Int8Stats>,
    /// Student against labels and teacher.
    pub student_eval: EvalReport,
    /// The student's layer sizes, input to classes.
    pub student_dims: Vec<usize>,
    /// The student's architecture in words ("MLP 784-800-10 (ReLU)", "CNN 1x28x28, ...").
    pub student_architecture: String,
    /// The settings it was trained with (from its student.json).
    pub student_settings: crate::config::TrainSettings,
    /// The temperature of the labels it learned from.
    pub temperature: f32,
    /// Ratios.
    pub ratios: Ratios,
    /// Plot files, relative to the report folder.
    pub plots: Vec<String>,
    /// The class names the labels recorded (`--class-names`), used in the per-class table and plots.
    pub class_names: Option<Vec<String>>,
}

/// Batch-1 latency percentiles (ms) and batch-256 throughput (rows/s) of a model on `rows`.
fn speed(model: &mut Teacher, rows: &Batch, row_shape: &[usize], runs: usize) -> Result<(f64, f64, f64)> {
    let one = slice_batch(rows, 0, 1);
    for _ in 0..10 {
        model.run(&one, row_shape)?;
    }
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let b = slice_batch(rows, i % rows.len(), 1);
        let t = Instant::now();
        model.run(&b, row_shape)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let big = slice_batch(rows, 0, rows.len().min(256));
    model.run(&big, row_shape)?;
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        model.run(&big, row_shape)?;
    }
    let throughput = (reps * big.len()) as f64 / t.elapsed().as_secs_f64();
    Ok((pct(0.5), pct(0.99), throughput))
}

fn slice_batch(b: &Batch, start: usize, n: usize) -> Batch {
    Batch {
        file: b.file.clone(),
        first_row: b.first_row + start as u64,
        first_source_row: b.first_source_row + start as u64,
        ids: b.ids[start..start + n].to_vec(),
        labels: b.labels[start..start + n].to_vec(),
        input: b.input.slice(start * b.width, n * b.width),
        width: b.width,
        nonfinite: Vec::new(),
        extra: b
            .extra
            .iter()
            .map(|e| crate::data::ExtraInput {
                column: e.column.clone(),
                values: e.values.slice(start * e.width, n * e.width),
                width: e.width,
            })
            .collect(),
        paths: b.paths.get(start..start + n).map(<[String]>::to_vec).unwrap_or_default(),
        token_labels: b.token_labels.get(start * b.width..(start + n) * b.width).map(<[_]>::to_vec).unwrap_or_default(),
    }
}

/// Runs the teacher over the data (when no soft labels are given).
fn teacher_outputs(teacher: &mut Teacher, source: &dyn Source, row_shape: &[usize]) -> Result<TeacherOutputs> {
    let (mut ids, mut labels, mut inputs, mut logits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut k = 0;
    for b in source.batches(256) {
        let b = b?;
        let (z, classes) = teacher.run(&b, row_shape)?;
        k = classes;
        ids.extend_from_slice(&b.ids);
        labels.extend_from_slice(&b.labels);
        inputs.extend(b.input_f32());
        logits.extend_from_slice(&z);
    }
    let n = ids.len();
    let width = inputs.len().checked_div(n).unwrap_or(0);
    Ok(TeacherOutputs {
        ids,
        labels,
        inputs: Array2::from_shape_vec((n, width), inputs).map_err(|e| Error::Internal(e.to_string()))?,
        outputs: Outputs::Dense {
            logits: Array2::from_shape_vec((n, k), logits).map_err(|e| Error::Internal(e.to_string()))?,
        },
        views: None,
        positions: None,
    })
}

/// Exports `student` as int8 into the report folder and measures it: size, speed on `first`, accuracy
/// on `source` and agreement with the float student's top class.
fn int8_stats(
    student: &StudentFile,
    settings: &ReportSettings,
    source: &dyn Source,
    first: &Batch,
    options: &TeacherOptions,
    size: &dyn Fn(&Path) -> Result<(u64, u64)>,
) -> Result<Int8Stats> {
    let path = settings.out.join("student_int8.onnx");
    let (rows, from) = crate::export::default_calibration(student)?;
    crate::export::export_int8(student, &path, rows.view(), &from)?;
    let mut model = Teacher::load(&path, options)?;
    let shape = model.row_shape(first.width, &source.input_name())?;
    let (p50, p99, tput) = speed(&mut model, first, &shape, settings.latency_runs)?;
    let (mut n, mut agree, mut labeled, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut cal = crate::eval::Calibration::default();
    let mut probs = Vec::new();
    for batch in source.batches(1024) {
        let batch = batch?;
        let (q, k) = model.run(&batch, &shape)?;
        let x = Array2::from_shape_vec((batch.len(), batch.width), batch.input_f32())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let f = student.student.forward(x.view());
        probs.resize(k, 0f32);
        for (i, (zq, zf)) in q.chunks_exact(k.max(1)).zip(f.rows()).enumerate() {
            if batch.nonfinite.binary_search(&i).is_ok() {
                continue;
            }
            let pred = argmax(zq).unwrap_or(0);
            n += 1;
            agree += u64::from(Some(pred) == argmax(&zf.to_vec()));
            if let Some(y) = batch.labels[i] {
                labeled += 1;
                errors += u64::from(pred as i64 != y);
                softmax_t(zq, 1.0, &mut probs);
                cal.add(f64::from(probs[pred]), pred as i64 == y);
            }
        }
    }
    let (parameters, bytes) = size(&path)?;
    Ok(Int8Stats {
        model: ModelStats {
            file: path.display().to_string(),
            parameters,
            bytes,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            throughput_rows_per_s: tput,
            accuracy: (labeled > 0).then(|| 1.0 - errors as f64 / labeled as f64),
            ece: cal.ece(),
        },
        agreement_with_float: agree as f64 / n.max(1) as f64,
        errors: (labeled > 0).then_some(errors),
        calibration: format!("{} rows of {from}", rows.nrows()),
    })
}

/// Builds the report in `settings.out`: report.json, report.md, student.onnx and the plots.
pub fn report(settings: &ReportSettings, progress: &dyn Progress) -> Result<Report> {
    let _lock = crate::util::OutputLock::acquire(&settings.out)?;
    std::fs::create_dir_all(&settings.out).map_err(|e| Error::io(&settings.out, e))?;
    let student = load_student(&settings.student)?;
    let student_onnx = settings.out.join("student.onnx");
    crate::export::export(&student, &student_onnx)?;
    let options = TeacherOptions { threads: settings.threads, ..Default::default() };
    let mut spec = settings.spec.clone();
    let teacher_options = if settings.inputs.is_empty() {
        options.clone()
    } else {
        // The student's input is one of the mapped columns; the teacher gets every mapped column.
        let first = spec.input.join(",");
        let primary = settings.inputs.iter().find(|m| m.column == first).ok_or_else(|| {
            Error::Config(format!("the student's input column '{first}' is none of the columns --input maps"))
        })?;
        let rest = settings.inputs.iter().filter(|m| m.column != first);
        spec.extra_inputs = rest.clone().map(|m| m.column.clone()).collect();
        TeacherOptions {
            input_name: Some(primary.name.clone()),
            extra_inputs: rest.map(|m| m.name.clone()).collect(),
            ..options.clone()
        }
    };
    let mut teacher = Teacher::load(&settings.teacher, &teacher_options)?;
    let mut student_model = Teacher::load(&student_onnx, &options)?;
    let source = crate::data::open(&settings.data, &spec)?;
    let first = source.batches(256).next().ok_or_else(|| Error::data(&settings.data, "dataset has zero rows"))??;
    let t_shape = teacher.row_shape(first.width, &source.input_name())?;
    let s_shape = student_model.row_shape(first.width, &source.input_name())?;

    progress.begin("latency", None);
    let (t50, t99, tput) = speed(&mut teacher, &first, &t_shape, settings.latency_runs)?;
    let (s50, s99, sput) = speed(&mut student_model, &first, &s_shape, settings.latency_runs)?;
    progress.end();

    // The plots need the teacher's full distribution: sparse labels are not enough, so run the teacher.
    let outputs = match &settings.labels {
        Some(dir) => {
            let labels = SoftLabels::open(dir)?;
            let outputs = labels.load()?;
            outputs.check_made_from(labels.manifest(), source.as_ref(), &settings.data)?;
            Some(outputs).filter(|o| o.dense_logits().is_some())
        }
        None => None,
    };
    let outputs = match outputs {
        Some(o) => o,
        None => teacher_outputs(&mut teacher, source.as_ref(), &t_shape)?,
    };
    let eval = evaluate(student.student.as_ref(), source.as_ref(), Some(&outputs), progress)?;
    let size = |p: &Path| -> Result<(u64, u64)> {
        // ONNX files are at most 2 GiB (protobuf's limit; larger models keep weights outside).
        let bytes = crate::util::read_bounded(p, crate::util::Links::Follow, 2 << 30, "an ONNX file")?;
        Ok((onnx_parameters(&bytes, p)?, bytes.len() as u64))
    };
    let (tp, tb) = size(&settings.teacher)?;
    let (sp, sb) = size(&student_onnx)?;
    let t_stats = ModelStats {
        file: settings.teacher.display().to_string(),
        parameters: tp,
        bytes: tb,
        latency_p50_ms: t50,
        latency_p99_ms: t99,
        throughput_rows_per_s: tput,
        accuracy: eval.teacher_accuracy,
        ece: eval.teacher_ece,
    };
    let s_stats = ModelStats {
        file: student_onnx.display().to_string(),
        parameters: sp,
        bytes: sb,
        latency_p50_ms: s50,
        latency_p99_ms: s99,
        throughput_rows_per_s: sput,
        accuracy: eval.accuracy,
        ece: eval.ece,
    };
    let student_int8 = match settings.int8 {
        true => Some(int8_stats(&student, settings, source.as_ref(), &first, &options, &size)?),
        false => None,
    };
    let ratios = Ratios {
        smaller_x: tb as f64 / sb.max(1) as f64,
        fewer_parameters_x: tp as f64 / sp.max(1) as f64,
        latency_speedup_x: t50 / s50.max(1e-9),
        throughput_speedup_x: sput / tput.max(1e-9),
        accuracy_kept_pct: eval.accuracy.zip(eval.teacher_accuracy).map(|(s, t)| 100.0 * s / t),
    };

    // Plots.
    let mut plots = Vec::new();
    let log = crate::student::io::load_log(&settings.student)?;
    if !log.is_empty() {
        write_atomic(&settings.out.join("training_curves.svg"), svg_training(&log).as_bytes())?;
        plots.push("training_curves.svg".to_string());
    }
    let student_logits = student.student.forward(outputs.inputs.view());
    let labels: Vec<i64> = outputs.labels.iter().map(|l| l.unwrap_or(-1)).collect();
    let teacher_logits = outputs.dense_logits().ok_or_else(|| Error::Internal("teacher outputs not dense".into()))?;
    let rel_t = reliability(teacher_logits, &labels);
    let rel_s = reliability(&student_logits, &labels);
    write_atomic(&settings.out.join("reliability.svg"), svg_reliability(&rel_t, &rel_s).as_bytes())?;
    plots.push("reliability.svg".to_string());
    write_atomic(
        &settings.out.join("temperatures.svg"),
        svg_temperatures(&outputs, teacher_logits, student.info.class_names.as_deref()).as_bytes(),
    )?;
    plots.push("temperatures.svg".to_string());

    let report = Report {
        threads: settings.threads,
        rows: eval.rows,
        teacher: t_stats,
        student: s_stats,
        student_int8,
        student_eval: eval,
        student_dims: student.info.dims.clone(),
        student_architecture: student.info.arch().describe(),
        student_settings: student.info.settings.clone(),
        temperature: student.info.temperature,
        ratios,
        plots,
        class_names: student.info.class_names.clone(),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&settings.out.join("report.json"), &json)?;
    write_atomic(&settings.out.join("report.md"), markdown(&report).as_bytes())?;
    Ok(report)
}

/// The int8 section: float and int8 students side by side, and what the user should know about it.
fn int8_markdown(s: &mut String, r: &Report, q: &Int8Stats) {
    let (f, m) = (&r.student, &q.model);
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
    let _ = writeln!(s, "## int8 export\n");
    let _ = writeln!(s, "Calibrated on {}.\n", q.calibration);
    let _ = writeln!(s, "| | student float32 | student int8 | ratio |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| bytes on disk | {} | {} | {} |",
        f.bytes,
        m.bytes,
        size_ratio(f.bytes as f64 / m.bytes.max(1) as f64)
    );
    let speedup = f.latency_p50_ms / m.latency_p50_ms.max(1e-9);
    let _ = writeln!(
        s,
        "| latency batch 1, p50 | {:.3} ms | {:.3} ms | {} |",
        f.latency_p50_ms,
        m.latency_p50_ms,
        ratio_words(speedup, "faster", "slower")
    );
    let _ = writeln!(s, "| latency batch 1, p99 | {:.3} ms | {:.3} ms | |", f.latency_p99_ms, m.latency_p99_ms);
    let tput = m.throughput_rows_per_s / f.throughput_rows_per_s.max(1e-9);
    let _ = writeln!(
        s,
        "| throughput batch 256 | {:.0} rows/s | {:.0} rows/s | {} |",
        f.throughput_rows_per_s,
        m.throughput_rows_per_s,
        ratio_words(tput, "higher", "lower")
    );
    let count = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let _ = writeln!(s, "| top-1 accuracy | {} | {} | |", pct(f.accuracy), pct(m.accuracy));
    let _ = writeln!(s, "| errors | {} | {} | |", count(r.student_eval.errors), count(q.errors));
    let _ = writeln!(s, "| same top class as float | | {} | |\n", pct(Some(q.agreement_with_float)));
    let mut warnings = Vec::new();
    let slower: Vec<&str> = [(speedup < 1.0, "at batch 1"), (tput < 1.0, "at batch 256")]
        .into_iter()
        .filter_map(|(slow, what)| slow.then_some(what))
        .collect();
    let note;
    if !slower.is_empty() {
        note = format!(
            "the int8 model is slower than the float one {} on this machine (ONNX Runtime runs it as integer \
             kernels, and there its float kernels are faster)",
            slower.join(" and ")
        );
        warnings.push(note.as_str());
    }
    if let (Some(a), Some(b)) = (f.accuracy, m.accuracy) {
        if b < a {
            warnings.push("the int8 model is less accurate than the float one (the errors row says by how much)");
        }
    }
    for w in warnings {
        let _ = writeln!(s, "Note: {w}.\n");
    }
}

/// One reliability bin: mean confidence, accuracy, count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bin {
    /// Mean top-1 probability in the bin.
    pub confidence: f64,
    /// Fraction correct in the bin.
    pub accuracy: f64,
    /// Predictions in the bin.
    pub count: u64,
}

/// Reliability bins (15, equal width) of logits against labels (rows with label < 0 are left out).
pub fn reliability(logits: &Array2<f32>, labels: &[i64]) -> Vec<Bin> {
    let mut bins = vec![Bin::default(); ECE_BINS];
    let mut p = vec![0f32; logits.ncols()];
    for (row, &y) in logits.rows().into_iter().zip(labels) {
        if y < 0 {
            continue;
        }
        let z = row.to_vec();
        softmax_t(&z, 1.0, &mut p);
        let pred = argmax(&p).unwrap_or(0);
        let c = f64::from(p[pred]);
        let b = ((c * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[b].confidence += c;
        bins[b].accuracy += f64::from(u8::from(pred as i64 == y));
        bins[b].count += 1;
    }
    for b in &mut bins {
        if b.count > 0 {
            b.confidence /= b.count as f64;
            b.accuracy /= b.count as f64;
        }
    }
    bins
}

/// "3.2x smaller" or, when the student is the bigger one, "3.9x larger".
pub fn size_ratio(teacher_over_student: f64) -> String {
    ratio_words(teacher_over_student, "smaller", "larger")
}

/// A ratio above 1 as "Nx `above`", below 1 as its inverse, "Nx `below`": never "0.6x fewer".
pub fn ratio_words(x: f64, above: &str, below: &str) -> String {
    if x >= 1.0 {
        format!("{x:.1}x {above}")
    } else {
        format!("{:.1}x {below}", 1.0 / x.max(1e-12))
    }
}

fn markdown(r: &Report) -> String {
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
    let mut s = String::new();
    let _ = writeln!(s, "# Distillation report\n");
    let _ = writeln!(
        s,
        "{} rows; ONNX Runtime with {} intra-op thread(s) for both models (0 = all cores).\n",
        r.rows, r.threads
    );
    let _ = writeln!(s, "| | teacher | student | ratio |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| parameters | {} | {} | {} |",
        r.teacher.parameters,
        r.student.parameters,
        ratio_words(r.ratios.fewer_parameters_x, "fewer", "more")
    );
    let _ = writeln!(
        s,
        "| bytes on disk | {} | {} | {} |",
        r.teacher.bytes,
        r.student.bytes,
        size_ratio(r.ratios.smaller_x)
    );
    let _ = writeln!(
        s,
        "| latency batch 1, p50 | {:.3} ms | {:.3} ms | {} |",
        r.teacher.latency_p50_ms,
        r.student.latency_p50_ms,
        ratio_words(r.ratios.latency_speedup_x, "faster", "slower")
    );
    let _ = writeln!(
        s,
        "| latency batch 1, p99 | {:.3} ms | {:.3} ms | |",
        r.teacher.latency_p99_ms, r.student.latency_p99_ms
    );
    let _ = writeln!(
        s,
        "| throughput batch 256 | {:.0} rows/s | {:.0} rows/s | {} |",
        r.teacher.throughput_rows_per_s,
        r.student.throughput_rows_per_s,
        ratio_words(r.ratios.throughput_speedup_x, "higher", "lower")
    );
    let _ = writeln!(
        s,
        "| top-1 accuracy | {} | {} | {} kept |",
        pct(r.teacher.accuracy),
        pct(r.student.accuracy),
        r.ratios.accuracy_kept_pct.map_or("-".into(), |v| format!("{v:.2}%"))
    );
    let _ = writeln!(
        s,
        "| ECE (15 bins) | {} | {} | |",
        r.teacher.ece.map_or("-".into(), |v| format!("{v:.4}")),
        r.student.ece.map_or("-".into(), |v| format!("{v:.4}"))
    );
    let e = &r.student_eval;
    let count = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let _ = writeln!(s, "| errors | {} | {} | |", count(e.teacher_errors), count(e.errors));
    let _ = writeln!(
        s,
        "\nStudent vs teacher: agreement {}, KL(teacher || student) {} nats (T = 1).\n",
        pct(e.teacher_agreement),
        e.kl_to_teacher.map_or("-".into(), |v| format!("{v:.4}"))
    );
    if let Some(q) = &r.student_int8 {
        int8_markdown(&mut s, r, q);
    }
    let t = &r.student_settings;
    let _ = writeln!(
        s,
        "## The student
"
    );
    let _ = writeln!(s, "- architecture: {}", r.student_architecture);
    let _ = writeln!(
        s,
        "- trained on soft labels at T = {}, alpha = {}: {} epoch(s) of batch {}, {}, lr {} ({:?} schedule), seed {}\n",
        r.temperature,
        t.alpha,
        t.epochs,
        t.batch_size,
        t.optimizer.describe(),
        t.optimizer.lr(),
        t.schedule,
        t.seed
    );
    let e = &r.student_eval;
    if !e.class_rows.is_empty() {
        let _ = writeln!(s, "## Student errors by class\n\n| class | rows | errors | error rate |\n|---|---|---|---|");
        for (c, (rows, errors)) in e.class_rows.iter().zip(&e.class_errors).enumerate() {
            let name = r.class_names.as_ref().and_then(|n| n.get(c)).map_or(c.to_string(), |n| format!("{c} ({n})"));
            let rate = if *rows > 0 { format!("{:.2}%", 100.0 * *errors as f64 / *rows as f64) } else { "-".into() };
            let _ = writeln!(s, "| {} | {rows} | {errors} | {rate} |", name.replace('|', "\\|"));
        }
        let _ = writeln!(s);
    }
    for p in &r.plots {
        let _ = writeln!(s, "![{p}]({p})");
    }
    s
}

// --- SVG plots, written by hand (no plotting dependency).

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_ratio_says_smaller_or_larger() {
        assert_eq!(size_ratio(3.2), "3.2x smaller");
        assert_eq!(size_ratio(0.25), "4.0x larger");
        // The report.md of a student 1.6x larger said "0.6x fewer parameters" (issue 14, trap 4).
        assert_eq!(ratio_words(1.0 / 1.6, "fewer", "more"), "1.6x more");
        assert_eq!(ratio_words(0.5, "faster", "slower"), "2.0x slower");
    }

    #[test]
    fn parameter_count_of_a_hand_built_model() {
        // A model with initializers of shapes [3, 4] and [3] (written by export's encoder elsewhere);
        // here a minimal protobuf: graph (7) { initializer (5) { dims (1) 3, dims (1) 4 }, initializer { dims 3 } }.
        let t1 = [0x08, 3, 0x08, 4];
        let t2 = [0x08, 3];
        let mut graph = vec![0x2a, t1.len() as u8];
        graph.extend_from_slice(&t1);
        graph.extend_from_slice(&[0x2a, t2.len() as u8]);
        graph.extend_from_slice(&t2);
        let mut model = vec![0x3a, graph.len() as u8];
        model.extend_from_slice(&graph);
        assert_eq!(onnx_parameters(&model, Path::new("m")).unwrap(), 15);
        assert!(onnx_parameters(&[0x3a, 50, 1], Path::new("m")).is_err());
    }
}
