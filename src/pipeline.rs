//! `softlabel run PIPELINE.toml`: precompute the train and test splits, train a student, evaluate it,
//! and report; nothing else (the stages are the same library calls the commands make).
//!
//! A complete soft-label dataset already in the output folder, made by the same teacher (sha256) from
//! the same data (fingerprint) at the same temperature, is reused: the teacher pass is paid once.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::augment::ViewOptions;
use crate::config::teacher::PassOptions;
use crate::config::Pipeline;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::eval::{evaluate, EvalReport};
use crate::precompute::{precompute, PrecomputeSettings};
use crate::progress::Progress;
use crate::store::{SoftLabels, WriterOptions};
use crate::train::{Resume, TrainJob, ValSet};

/// What `run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The teacher file.
    pub teacher: String,
    /// Its sha256.
    pub teacher_sha256: String,
    /// Temperature of the labels.
    pub temperature: f32,
    /// Where the train labels are.
    pub train_labels: String,
    /// Whether the train labels were reused from an earlier run.
    pub train_labels_reused: bool,
    /// Teacher pass seconds (0 when reused).
    pub precompute_seconds: f64,
    /// The student folder.
    pub student: String,
    /// `[input, hidden..., classes]`.
    pub student_dims: Vec<usize>,
    /// Trainable parameters.
    pub student_parameters: usize,
    /// Training seconds.
    pub train_seconds: f64,
    /// Student on the test set, with the teacher's outputs for comparison.
    pub test: EvalReport,
    /// The compression report, when `[output] report = true`.
    pub report: Option<crate::report::Report>,
}

/// Which split a teacher pass is for: only the training split gets views and may leave its inputs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

/// Reuses `out` if it is a complete dataset matching these settings, else (re)computes it.
fn labels_for(
    p: &Pipeline,
    split: Split,
    teacher_sha: &str,
    pass: &PassOptions,
    progress: &dyn Progress,
) -> Result<(SoftLabels, bool, f64)> {
    let f = &p.file;
    let (data, name) = match split {
        Split::Train => (&f.data.train, "labels-train"),
        Split::Test => (&f.data.test, "labels-test"),
    };
    let out = f.output.dir.join(name);
    let mut settings =
        f.teacher.validate(&p.teacher_origin(), data.clone(), f.data.columns().spec(), out.clone(), pass)?;
    if split == Split::Test {
        // The test split is stored whole: with its inputs, never augmented.
        settings.views = None;
        settings.no_inputs = false;
    }
    if let Ok(existing) = SoftLabels::open(&out) {
        let m = existing.manifest();
        let fingerprint = crate::data::open(data, &settings.spec)?.source_info()?.fingerprint;
        if m.teacher.sha256 == teacher_sha
            && m.temperature == settings.temperature
            && m.source.fingerprint == fingerprint
            && m.class_names == settings.class_names
            && m.form == settings.form
            && m.float16 == settings.float16
            && m.input.stored != settings.no_inputs
            && same_views(m.views.as_ref(), settings.views.as_ref())
        {
            tracing::info!(dir = %out.display(), "reusing soft labels");
            return Ok((existing, true, 0.0));
        }
    }
    let start = Instant::now();
    // An interrupted earlier run is continued; labels from other settings are replaced.
    if let Err(e) = precompute(&settings, progress) {
        if !matches!(e, Error::Dataset { .. }) {
            return Err(e);
        }
        tracing::warn!("{e}; recomputing {}", out.display());
        let writer = WriterOptions { overwrite: true, ..settings.writer.clone() };
        precompute(&PrecomputeSettings { resume: false, writer, ..settings }, progress)?;
    }
    Ok((SoftLabels::open(&out)?, false, start.elapsed().as_secs_f64()))
}

/// Runs a whole pipeline. `ort_lib` overrides the ONNX Runtime library.
pub fn run(p: &Pipeline, ort_lib: Option<&Path>, progress: &dyn Progress) -> Result<RunReport> {
    let f = &p.file;
    let models = f.teacher.model.paths();
    let shas = models.iter().map(|m| crate::util::sha256_file(m)).collect::<Result<Vec<_>>>()?;
    let teacher_sha = crate::teacher::ensemble_sha256(&shas, f.teacher.combine);
    if let Some(lib) = ort_lib {
        crate::teacher::environment(Some(lib))?;
    }
    let out = &f.output.dir;
    let _lock = crate::util::OutputLock::acquire(out)?;
    let pass = PassOptions { resume: true, ort_lib: ort_lib.map(Path::to_path_buf), ..Default::default() };
    let (train_labels, reused, pre_train) = labels_for(p, Split::Train, &teacher_sha, &pass, progress)?;
    let (test_labels, _, pre_test) = labels_for(p, Split::Test, &teacher_sha, &pass, progress)?;

    let test_outputs = test_labels.load()?;
    let val = ValSet {
        inputs: test_outputs.inputs.clone(),
        labels: test_outputs.labels.iter().map(|l| l.unwrap_or(-1)).collect(),
    };
    let has_val_labels = test_outputs.labels.iter().all(Option::is_some);
    let student_dir = out.join(&f.output.student);
    let job = TrainJob {
        labels: &train_labels,
        settings: &p.train,
        out: &student_dir,
        val: has_val_labels.then_some(&val),
        join: (!train_labels.manifest().input.stored).then_some((f.data.train.as_path(), false)),
        // A run interrupted during training continues from its last epoch.
        resume: Resume::IfMatching,
        threads: f.student.threads,
    };
    let (trained, info) = crate::train::run(&job, progress)?;

    let test_source = crate::data::open(test_labels.dir(), &DataSpec::new(crate::store::columns::INPUT))?;
    let test = evaluate(trained.student.as_ref(), test_source.as_ref(), Some(&test_outputs), progress)?;
    let report = if f.output.report {
        let settings = crate::report::ReportSettings {
            teacher: models[0].clone(),
            student: student_dir.clone(),
            data: test_labels.dir().to_path_buf(),
            spec: DataSpec::new(crate::store::columns::INPUT),
            labels: Some(test_labels.dir().to_path_buf()),
            out: out.join(if f.output.student == "student" {
                "report".to_string()
            } else {
                format!("{}-report", f.output.student)
            }),
            threads: f.teacher.threads,
            latency_runs: 200,
        };
        Some(crate::report::report(&settings, progress)?)
    } else {
        None
    };
    Ok(RunReport {
        teacher: models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" + "),
        teacher_sha256: teacher_sha,
        temperature: train_labels.manifest().temperature,
        train_labels: train_labels.dir().display().to_string(),
        train_labels_reused: reused,
        precompute_seconds: pre_train + pre_test,
        student: student_dir.display().to_string(),
        student_dims: trained.student.dims(),
        student_parameters: trained.student.num_parameters(),
        train_seconds: info.train_seconds,
        test,
        report,
    })
}

/// Whether stored views match the requested ones (the image layout may have come from the teacher).
fn same_views(stored: Option<&crate::augment::Views>, wanted: Option<&ViewOptions>) -> bool {
    match (stored, wanted) {
        (None, None) => true,
        (Some(s), Some(w)) => {
            s.count == w.count && s.max_shift == w.max_shift && s.seed == w.seed && w.image.is_none_or(|i| i == s.image)
        }
        _ => false,
    }
}
