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
    /// Replace a finished student in `out` that was made otherwise (else it is refused).
    pub overwrite: bool,
}

/// What [`run`] found in the student folder before training.
enum Existing {
    /// No finished student.
    None,
    /// A finished student made with the same settings, labels, validation rows and softlabel version.
    Same(Box<student::io::StudentFile>),
}

/// Looks at a finished student in `out`: the same job's is reused, another is refused unless `overwrite`.
fn existing_student(
    out: &Path,
    settings: &TrainSettings,
    labels_sha256: &str,
    validated_on: Option<&str>,
    overwrite: bool,
) -> Result<Existing> {
    let info_path = out.join(student::io::INFO);
    if !info_path.exists() {
        return Ok(Existing::None);
    }
    let found = student::io::load(out);
    let differences = match &found {
        Ok(f) => differences(&f.info, settings, labels_sha256, validated_on),
        Err(e) => vec![format!("it cannot be read ({e})")],
    };
    match found {
        Ok(f) if differences.is_empty() => Ok(Existing::Same(Box::new(f))),
        _ if overwrite => {
            tracing::warn!(dir = %out.display(), "replacing the finished student there (--overwrite)");
            Ok(Existing::None)
        }
        _ => Err(Error::Config(format!(
            "{} holds a finished student made otherwise: {}; pass --overwrite to replace it, or train into another \
             folder",
            out.display(),
            differences.join("; ")
        ))),
    }
}

/// How a finished student's record differs from this job (empty: the same job).
fn differences(
    info: &StudentInfo,
    settings: &TrainSettings,
    labels_sha256: &str,
    validated_on: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let now = format!("softlabel {}", env!("CARGO_PKG_VERSION"));
    if info.created_by != now {
        out.push(format!("made by {}, this is {now}", info.created_by));
    }
    if info.labels_manifest_sha256 != labels_sha256 {
        out.push(format!(
            "learned from other labels (manifest sha256 {} there, {} here)",
            short(&info.labels_manifest_sha256),
            short(labels_sha256)
        ));
    }
    if info.validated_on.as_deref() != validated_on {
        out.push(format!(
            "validated on {} there, {} here",
            info.validated_on.as_deref().unwrap_or("nothing"),
            validated_on.unwrap_or("nothing")
        ));
    }
    match (serde_json::to_value(&info.settings), serde_json::to_value(settings)) {
        (Ok(there), Ok(here)) => json_differences("", &there, &here, &mut out),
        _ if info.settings != *settings => out.push("other training settings".into()),
        _ => {}
    }
    out
}

/// Appends "`path` = A there, B here" for each leaf where `there` and `here` differ.
fn json_differences(path: &str, there: &serde_json::Value, here: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if let (Value::Object(a), Value::Object(b)) = (there, here) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            json_differences(&sub, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
        }
    } else if there != here {
        out.push(format!("{path} = {} there, {} here", show_json(there), show_json(here)));
    }
}

/// A settings value as written: f32 settings at their shortest (0.7, not 0.699999988079071).
fn show_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "unset".into(),
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if f64::from(x as f32) == x {
                (x as f32).to_string()
            } else {
                x.to_string()
            }
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(show_json).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Trains as `job` says and saves the student to `job.out` (weights, student.json, train_log.jsonl),
/// removing the checkpoint once the student is saved.
pub fn run(job: &TrainJob, progress: &dyn Progress) -> Result<(TrainedStudent, StudentInfo)> {
    let TrainJob { labels, settings, out, val, join, resume, threads, overwrite } = *job;
    let mut inputs = vec![labels.dir()];
    inputs.extend(join.map(|(data, _)| data));
    crate::util::refuse_overlap(out, "--out", &inputs)?;
    let _lock = crate::util::OutputLock::acquire(out)?;
    if val.is_some() && settings.holdout.is_some() {
        return Err(Error::Config("--val and --val-fraction exclude each other: validate on one of them".into()));
    }
    let m = labels.manifest();
    if let Some(fp) = val.and_then(|v| v.source_fingerprint.as_deref()) {
        if fp == m.source.fingerprint {
            return Err(Error::Config(format!(
                "--val is the data {} was made from (fingerprint {}): validating on the training rows says \
                 nothing about new ones; pass other data, or --val-fraction F to hold rows out",
                labels.dir().display(),
                short(fp)
            )));
        }
    }
    let labels_sha256 = labels.manifest_sha256()?;
    let held_out_identity = settings.holdout.map(|_| format!("held out of {labels_sha256}"));
    let validated_on = val.map(|v| v.identity.clone()).or(held_out_identity);
    if let Existing::Same(found) = existing_student(out, settings, &labels_sha256, validated_on.as_deref(), overwrite)?
    {
        tracing::info!(dir = %out.display(), "reusing the finished student: same settings, labels and version");
        let trained = TrainedStudent {
            log: student::io::load_log(out)?,
            temperature: found.info.temperature,
            rows: found.info.train_rows as usize,
            saved_epoch: found.info.saved_epoch,
            stopped_early: found.info.stopped_early,
            student: found.student,
            reused: true,
        };
        return Ok((trained, found.info));
    }
    let rows = rows::open(labels, settings, join)?;
    let held_out = rows::held_out(labels, settings, join)?;
    let val = val.or(held_out.as_ref());
    let features = settings
        .relations
        .iter()
        .map(|r| labels.feature_table(&r.feature))
        .collect::<Result<Vec<crate::store::FeatureTable>>>()?;
    let data = TrainData {
        features: &features,
        rows: rows.as_ref(),
        num_classes: m.num_classes,
        temperature: m.temperature,
        origin: labels.dir(),
        input_shape: &m.input.shape,
    };
    let cp =
        Checkpointing { dir: out.to_path_buf(), resume: resume != Resume::No, labels_sha256: labels_sha256.clone() };
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
    info.validated_on = validated_on;
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
        kind: trained.student.arch().kind,
        channels: trained.student.arch().channels,
        image: trained.student.arch().image,
        embed: trained.student.arch().embed,
        batch_norm: trained.student.arch().batch_norm,
        activation: "relu".into(),
        input_column: m.input.source_column.clone(),
        input_image: m.input.image.clone(),
        input_dtype: m.input.dtype,
        // A sequence student reads a window of tokens a position, not the stored one.
        input_shape: match m.sequence {
            Some(_) => vec![trained.student.input_width()],
            None => m.input.shape.clone(),
        },
        teacher_input_name: Some(m.teacher.input_name.clone()),
        // Recorded from schema 1.3 on, where its absence means the stored type; unknown before.
        teacher_input_type: m.teacher.input_type.or_else(|| {
            let minor = m.schema_version.split('.').nth(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
            (minor >= 3).then_some(m.input.dtype)
        }),
        class_names: m.class_names.clone(),
        settings: settings.clone(),
        temperature: trained.temperature,
        labels_dir: labels.dir().display().to_string(),
        labels_manifest_sha256: labels.manifest_sha256()?,
        teacher_sha256: m.teacher.sha256.clone(),
        train_rows: trained.rows as u64,
        final_epoch: trained.log.last().cloned(),
        saved_epoch: trained.saved_epoch,
        stopped_early: trained.stopped_early,
        validated_on: None,
        train_seconds,
        weights_sha256: String::new(),
        bias_adjustments: Vec::new(),
        sequence: m.sequence.clone(),
    })
}
