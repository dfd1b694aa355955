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
    /// The distillation temperature the student learned at (the labels' unless re-softened or set in
    /// `[student]`).
    pub temperature: f32,
    /// Where the train labels are.
    pub train_labels: String,
    /// Whether the train labels were reused from an earlier run.
    pub train_labels_reused: bool,
    /// The temperature the reused dense labels were made at, when the student distils at another
    /// (`temperature`): their stored logits were re-softened.
    pub resoftened_from: Option<f32>,
    /// Whether a finished student made by the same settings, labels and version was reused.
    pub student_reused: bool,
    /// Teacher pass seconds (0 when reused).
    pub precompute_seconds: f64,
    /// The student folder.
    pub student: String,
    /// `[input, hidden..., classes]`.
    pub student_dims: Vec<usize>,
    /// The student's architecture in words.
    pub student_architecture: String,
    /// Trainable parameters.
    pub student_parameters: usize,
    /// Training seconds.
    pub train_seconds: f64,
    /// Student on the test set, with the teacher's outputs for comparison.
    pub test: EvalReport,
    /// The compression report, when `[output] report = true`.
    pub report: Option<crate::report::Report>,
    /// The sweep, when the pipeline has a `[sweep]` (its chosen run is `student`).
    pub sweep: Option<crate::sweep::SweepReport>,
}

/// Which split a teacher pass is for: only the training split gets views and may leave its inputs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

/// The soft labels of one split, and how they were come by.
struct SplitLabels {
    labels: SoftLabels,
    /// Found finished in the output folder (no teacher pass).
    reused: bool,
    /// Seconds of teacher pass (0 when reused).
    seconds: f64,
    /// The temperature `[teacher]` asks for, when the reused dense labels were made at another: their raw
    /// logits are re-softened at it, as any temperature can be.
    resoften: Option<f32>,
}

/// The finished soft labels in `out` if they were made as `settings` asks (a dense dataset made at
/// another temperature counts: its logits are re-softened), an interrupted run continued, or a new
/// teacher pass. Finished labels made otherwise are replaced only with `overwrite`.
fn labels_for(
    p: &Pipeline,
    split: Split,
    teacher_sha: &str,
    pass: &PassOptions,
    progress: &dyn Progress,
) -> Result<SplitLabels> {
    let f = &p.file;
    let (data, name) = match split {
        Split::Train => (&f.data.train, "labels-train"),
        Split::Test => (&f.data.test, "labels-test"),
    };
    let out = f.output.dir.join(name);
    let mut settings = f.teacher.validate(
        &p.teacher_origin(),
        data.clone(),
        f.data.split_spec(split == Split::Train),
        out.clone(),
        pass,
    )?;
    if split == Split::Test {
        // The test split is stored whole: with its inputs, never augmented.
        settings.views = None;
        settings.no_inputs = false;
    }
    let mut replace = false;
    if out.join(crate::store::MANIFEST).exists() {
        let fingerprint = crate::data::open(data, &settings.spec)?.source_info()?.fingerprint;
        let found = SoftLabels::open(&out);
        let diffs = match &found {
            Ok(existing) => label_differences(existing.manifest(), &settings, teacher_sha, &fingerprint),
            Err(e) => vec![format!("it cannot be read ({e})")],
        };
        let wanted = settings.temperature;
        match found {
            Ok(existing) if diffs.is_empty() => {
                let made_at = existing.manifest().temperature;
                if made_at == wanted {
                    tracing::info!(dir = %out.display(), "reusing soft labels");
                    return Ok(SplitLabels { labels: existing, reused: true, seconds: 0.0, resoften: None });
                }
                if existing.manifest().form.is_dense() {
                    tracing::info!(
                        dir = %out.display(),
                        made_at, wanted,
                        "reusing soft labels: their stored logits are re-softened at the new temperature"
                    );
                    return Ok(SplitLabels { labels: existing, reused: true, seconds: 0.0, resoften: Some(wanted) });
                }
                if !p.overwrite {
                    return Err(Error::dataset(
                        &out,
                        format!(
                            "holds {} labels made at T = {made_at}: their normaliser (top-k) or draws (sampled) \
                             hold only at that temperature, so [teacher] temperature = {wanted} needs a new \
                             teacher pass; pass `run --overwrite` to replace them, or keep [teacher] temperature \
                             = {made_at} (dense labels can be re-softened at any temperature)",
                            existing.manifest().form.name()
                        ),
                    ));
                }
            }
            _ if p.overwrite => {}
            _ => {
                return Err(Error::dataset(
                    &out,
                    format!(
                        "holds finished soft labels made otherwise: {}; pass `run --overwrite` to replace them, \
                         or choose another [output] dir",
                        diffs.join("; ")
                    ),
                ))
            }
        }
        tracing::warn!(dir = %out.display(), "replacing finished soft labels (--overwrite)");
        replace = true;
    }
    let start = Instant::now();
    if replace {
        let writer = WriterOptions { overwrite: true, ..settings.writer.clone() };
        precompute(&PrecomputeSettings { resume: false, writer, ..settings }, progress)?;
    } else if let Err(e) = precompute(&settings, progress) {
        // An interrupted earlier run is continued; one interrupted with other settings is started again
        // (it holds no finished dataset).
        if !matches!(e, Error::Dataset { .. }) {
            return Err(e);
        }
        tracing::warn!("{e}; starting the interrupted teacher pass in {} again", out.display());
        let writer = WriterOptions { overwrite: true, ..settings.writer.clone() };
        precompute(&PrecomputeSettings { resume: false, writer, ..settings }, progress)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(SplitLabels { labels: SoftLabels::open(&out)?, reused: false, seconds, resoften: None })
}

/// How finished labels differ from what `settings` would make, the temperature aside (empty: reusable).
fn label_differences(
    m: &crate::store::Manifest,
    settings: &PrecomputeSettings,
    teacher_sha: &str,
    fingerprint: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |same: bool, what: String| {
        if !same {
            out.push(what);
        }
    };
    differ(m.teacher.sha256 == teacher_sha, format!("another teacher (sha256 {} there)", short(&m.teacher.sha256)));
    differ(
        m.source.fingerprint == fingerprint,
        format!("other data (fingerprint {} there)", short(&m.source.fingerprint)),
    );
    differ(m.class_names == settings.class_names, "other class names".into());
    differ(m.form == settings.form, format!("form {} there, {} here", m.form.name(), settings.form.name()));
    differ(m.float16 == settings.float16, format!("float16 = {} there", m.float16));
    differ(m.input.stored != settings.no_inputs, format!("inputs stored = {} there", m.input.stored));
    differ(same_views(m.views.as_ref(), settings.views.as_ref()), "other views".into());
    let input_here = settings.spec.input.join(",");
    differ(
        m.input.source_column == input_here,
        format!("input column '{}' there, '{input_here}' here", m.input.source_column),
    );
    let fed = |pairs: Vec<(&str, &str)>| pairs.iter().map(|(n, c)| format!("{n}={c}")).collect::<Vec<_>>().join(" ");
    let there = fed(m.teacher.extra_inputs.iter().map(|e| (e.name.as_str(), e.column.as_str())).collect());
    let here = fed(settings
        .teacher_options
        .extra_inputs
        .iter()
        .zip(&settings.spec.extra_inputs)
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect());
    differ(there == here, format!("further teacher inputs [{there}] there, [{here}] here"));
    out
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
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
    let train_split = labels_for(p, Split::Train, &teacher_sha, &pass, progress)?;
    let test_split = labels_for(p, Split::Test, &teacher_sha, &pass, progress)?;
    let (train_labels, test_labels) = (&train_split.labels, &test_split.labels);
    // Dense labels reused at a new [teacher] temperature: the student distils at it (unless [student]
    // names its own), from the stored logits.
    let mut settings = p.train.clone();
    if settings.temperature.is_none() {
        settings.temperature = train_split.resoften;
    }

    let test_outputs = test_labels.load()?;
    // Without a held-out split ([student] val_fraction) the test split is watched after each epoch; it
    // never chooses an epoch (Pipeline::parse refuses keep = "best" and early_stop without a split).
    let val = ValSet::from_outputs(&test_outputs, format!("soft-label dataset {}", test_labels.manifest_sha256()?))?;
    let watch_test = p.train.holdout.is_none() && test_outputs.labels.iter().all(Option::is_some);
    let student_dir = out.join(&f.output.student);
    let job = TrainJob {
        labels: train_labels,
        settings: &settings,
        out: &student_dir,
        val: watch_test.then_some(&val),
        join: (!train_labels.manifest().input.stored).then_some((f.data.train.as_path(), false)),
        // A run interrupted during training continues from its last epoch.
        resume: Resume::IfMatching,
        threads: f.student.threads,
        overwrite: p.overwrite,
    };
    // The student stage: one student, or a sweep whose best run on validation goes on to the test.
    let mut sweep_report = None;
    let (student, student_dir, temperature, reused, train_seconds) = match &f.sweep {
        None => {
            let (trained, info) = crate::train::run(&job, progress)?;
            (trained.student, student_dir, trained.temperature, trained.reused, info.train_seconds)
        }
        Some(section) => {
            let report = sweep_stage(p, section, &settings, train_labels, progress)?;
            let chosen = report.runs.first().filter(|r| r.score().is_some()).ok_or_else(|| {
                Error::Config(format!("{}: [sweep] no run has a validation result", p.path.display()))
            })?;
            let found = crate::student::io::load(&chosen.dir)?;
            let reused = report.runs.iter().all(|r| r.reused);
            let seconds = report.runs.iter().map(|r| r.train_seconds).sum();
            let dir = chosen.dir.clone();
            sweep_report = Some(report);
            (found.student, dir, found.info.temperature, reused, seconds)
        }
    };

    let test_source = crate::data::open(test_labels.dir(), &DataSpec::new(crate::store::columns::INPUT))?;
    let test = evaluate(student.as_ref(), test_source.as_ref(), Some(&test_outputs), progress)?;
    let report = if f.output.report {
        // The test labels store the student's input only: a teacher of several inputs reads the test data.
        let (data, spec) = if f.teacher.inputs.is_empty() {
            (test_labels.dir().to_path_buf(), DataSpec::new(crate::store::columns::INPUT))
        } else {
            (f.data.test.clone(), f.data.split_spec(false))
        };
        let settings = crate::report::ReportSettings {
            teacher: models[0].clone(),
            student: student_dir.clone(),
            data,
            spec,
            inputs: f.teacher.inputs.clone(),
            labels: Some(test_labels.dir().to_path_buf()),
            out: f.output.report_dir(),
            threads: f.teacher.threads,
            latency_runs: 200,
            int8: f.output.int8,
        };
        Some(crate::report::report(&settings, progress)?)
    } else {
        None
    };
    Ok(RunReport {
        teacher: models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" + "),
        teacher_sha256: teacher_sha,
        temperature,
        train_labels: train_labels.dir().display().to_string(),
        train_labels_reused: train_split.reused,
        resoftened_from: train_split.resoften.map(|_| train_labels.manifest().temperature),
        precompute_seconds: train_split.seconds + test_split.seconds,
        student_reused: reused,
        student: student_dir.display().to_string(),
        student_dims: student.dims(),
        student_architecture: student.arch().describe(),
        student_parameters: student.num_parameters(),
        train_seconds,
        test,
        report,
        sweep: sweep_report,
    })
}

/// `[sweep]`: the grid over `[student]` (as the base) on the training labels, into `DIR/sweep`, with
/// rows held out of the labels for validation; the test split measures only the chosen run (after).
fn sweep_stage(
    p: &Pipeline,
    section: &crate::config::pipeline::SweepSection,
    settings: &crate::config::TrainSettings,
    labels: &SoftLabels,
    progress: &dyn Progress,
) -> Result<crate::sweep::SweepReport> {
    let f = &p.file;
    let mut spec = section.spec(&f.student)?;
    if let (Some(t), false) = (settings.temperature, spec.base.contains_key("temperature")) {
        spec.base.insert("temperature".into(), toml::Value::Float(f64::from(t)));
    }
    let runs = spec.expand(true).map_err(|e| Error::Config(format!("{}: [sweep] {e}", p.path.display())))?;
    let out = f.output.dir.join("sweep");
    let job = crate::sweep::SweepJob {
        labels,
        runs: &runs,
        out: &out,
        val: None,
        join: (!labels.manifest().input.stored).then_some((f.data.train.as_path(), false)),
        parallel: section.parallel,
        threads: f.student.threads,
        overwrite: p.overwrite,
    };
    let mut report = crate::sweep::run(&job, progress)?;
    crate::sweep::test_chosen(&mut report, &f.output.dir.join("labels-test"), None, progress)?;
    crate::sweep::write(&report, &out)?;
    Ok(report)
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
