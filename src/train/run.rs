//! The whole training job, from a soft-label dataset to a saved student folder: rows chosen once,
//! checkpoints, the thread pool, `student.json`. `softlabel train` and pipelines both call [`run`].

use std::path::Path;
use std::time::Instant;

use super::{rows, train, Checkpointing, TrainData, TrainedStudent, ValSet};
use crate::config::TrainSettings;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::SoftLabels;
use crate::student::{self, StudentInfo};
use crate::util::with_threads;

/// What to do with a checkpoint already in the student folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Start from scratch (a checkpoint there is overwritten after the first epoch).
    No,
    /// Continue from it; one made with other settings, data or threads is an error (`train --resume`).
    Required,
    /// Continue from it when it matches, else start from scratch with a warning (`softlabel run`).
    IfMatching,
}

/// One training job.
#[derive(Clone, Copy)]
pub struct TrainJob<'a> {
    /// The soft labels.
    pub labels: &'a SoftLabels,
    /// Validated settings.
    pub settings: &'a TrainSettings,
    /// The student folder to write.
    pub out: &'a Path,
    /// Rows to report accuracy on after each epoch.
    pub val: Option<&'a ValSet>,
    /// For a label-only dataset: the source to join its inputs from, and whether to ignore its fingerprint.
    pub join: Option<(&'a Path, bool)>,
    /// Checkpoint policy.
    pub resume: Resume,
    /// Training threads (0: all cores).
    pub threads: usize,
}

/// Trains as `job` says and saves the student to `job.out` (weights, student.json, train_log.jsonl),
/// removing the checkpoint once the student is saved.
pub fn run(job: &TrainJob, progress: &dyn Progress) -> Result<(TrainedStudent, StudentInfo)> {
    let TrainJob { labels, settings, out, val, join, resume, threads } = *job;
    let mut inputs = vec![labels.dir()];
    inputs.extend(join.map(|(data, _)| data));
    crate::util::refuse_overlap(out, "--out", &inputs)?;
    let _lock = crate::util::OutputLock::acquire(out)?;
    let rows = rows::open(labels, settings, join)?;
    let m = labels.manifest();
    let data =
        TrainData { rows: rows.as_ref(), num_classes: m.num_classes, temperature: m.temperature, origin: labels.dir() };
    let cp = Checkpointing {
        dir: out.to_path_buf(),
        resume: resume != Resume::No,
        labels_sha256: labels.manifest_sha256()?,
    };
    let start = Instant::now();
    let trained = with_threads(threads, || match train(&data, settings, val, Some(&cp), progress) {
        Err(Error::Dataset { path, message }) if resume == Resume::IfMatching && path.starts_with(out) => {
            tracing::warn!("{}: {message}; training from scratch", path.display());
            train(&data, settings, val, Some(&Checkpointing { resume: false, ..cp.clone() }), progress)
        }
        other => other,
    })??;
    let secs = start.elapsed().as_secs_f64();
    let mut info = student_info(&trained, settings, labels, secs)?;
    student::io::save(out, trained.student.as_ref(), &mut info, &trained.log)?;
    super::checkpoint::remove(out)?;
    Ok((trained, info))
}

/// The description saved next to a trained student.
pub fn student_info(
    trained: &TrainedStudent,
    settings: &TrainSettings,
    labels: &SoftLabels,
    train_seconds: f64,
) -> Result<StudentInfo> {
    let m = labels.manifest();
    Ok(StudentInfo {
        format: "softlabel-student".into(),
        version: 1,
        created_by: format!("softlabel {}", env!("CARGO_PKG_VERSION")),
        dims: trained.student.dims(),
        activation: "relu".into(),
        input_column: m.input.source_column.clone(),
        input_dtype: m.input.dtype,
        input_shape: m.input.shape.clone(),
        class_names: m.class_names.clone(),
        settings: settings.clone(),
        temperature: trained.temperature,
        labels_dir: labels.dir().display().to_string(),
        labels_manifest_sha256: labels.manifest_sha256()?,
        teacher_sha256: m.teacher.sha256.clone(),
        train_rows: trained.rows as u64,
        final_epoch: trained.log.last().cloned(),
        train_seconds,
        weights_sha256: String::new(),
        bias_adjustments: Vec::new(),
    })
}
