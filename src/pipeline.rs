//! Pipeline files (`softlabel run PIPELINE.toml`): precompute the train and test splits, train a
//! student, evaluate it. Relative paths resolve against the pipeline file's folder.
//!
//! A complete soft-label dataset already in the output folder, made by the same teacher (sha256) from
//! the same data (fingerprint) at the same temperature, is reused: the teacher pass is paid once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::dataset::{DataSource, DataSpec};
use crate::error::{Error, Result};
use crate::eval::{evaluate, EvalReport};
use crate::precompute::{precompute, PrecomputeSettings};
use crate::progress::Progress;
use crate::store::{Manifest, SoftLabels, WriterOptions};
use crate::student::{self, Adam, LrSchedule, Optimizer, Sgd, TrainSettings};
use crate::teacher::{Combine, OutputKind, TeacherOptions};

/// One column name or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    /// A list column (or one scalar column).
    One(String),
    /// Several scalar columns.
    Many(Vec<String>),
}

impl Columns {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Columns::One(c) => vec![c.clone()],
            Columns::Many(c) => c.clone(),
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct DataSection {
    /// Training (transfer) set: Parquet file or folder.
    pub train: PathBuf,
    /// Test set: Parquet file or folder.
    pub test: PathBuf,
    /// Input column(s).
    #[serde(default = "default_input")]
    pub input_column: Columns,
    /// Label column (default: `label` when present).
    pub label_column: Option<String>,
    /// Id column (default: `id` when present, else row index).
    pub id_column: Option<String>,
    /// Skip (and count) rows whose input has NaN or infinite values instead of failing.
    #[serde(default)]
    pub skip_nonfinite: bool,
}

fn default_input() -> Columns {
    Columns::One("input".into())
}

/// `[teacher]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TeacherSection {
    /// The ONNX model, or a list of models forming an ensemble.
    pub model: Models,
    /// How an ensemble's outputs are combined.
    #[serde(default)]
    pub combine: Combine,
    /// What the teacher outputs (default: detected).
    #[serde(default)]
    pub output: OutputKind,
    /// The input to feed, for models with several.
    pub input_name: Option<String>,
    /// The output to read, for models with several.
    pub output_name: Option<String>,
    /// Temperature of the stored `soft` column.
    pub temperature: f32,
    /// Rows per inference call.
    #[serde(default = "default_teacher_batch")]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    #[serde(default)]
    pub threads: usize,
    /// Class names.
    pub class_names: Option<Vec<String>>,
    /// Views per training row (`precompute --views`): view 0 as it is, the others shifted by up to
    /// `max_shift` pixels. The test split is never augmented.
    #[serde(default = "one")]
    pub views: u16,
    /// Largest shift of a view, in pixels.
    #[serde(default = "default_max_shift")]
    pub max_shift: u16,
    /// The input's image layout, "HxW" or "CxHxW" (default: from the teacher's input shape).
    pub image: Option<String>,
    /// Seed of the views' shifts.
    #[serde(default)]
    pub view_seed: u64,
}

fn one() -> u16 {
    1
}

fn default_max_shift() -> u16 {
    2
}

impl TeacherSection {
    /// The views the training split is stored with, if more than one per row.
    pub fn view_options(&self) -> Result<Option<crate::augment::ViewOptions>> {
        if self.views <= 1 {
            return Ok(None);
        }
        let image = self.image.as_deref().map(crate::augment::parse_image).transpose()?;
        Ok(Some(crate::augment::ViewOptions {
            count: self.views,
            max_shift: self.max_shift,
            image,
            seed: self.view_seed,
        }))
    }
}

/// One model or several (an ensemble).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Models {
    /// One teacher.
    One(PathBuf),
    /// An ensemble.
    Many(Vec<PathBuf>),
}

impl Models {
    /// The paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Models::One(p) => vec![p.clone()],
            Models::Many(p) => p.clone(),
        }
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Models::One(p) => vec![p],
            Models::Many(p) => p.iter_mut().collect(),
        }
    }
}

fn default_teacher_batch() -> usize {
    256
}

/// The optimizer's name in pipeline files and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// Adam (AdamW with --weight-decay).
    Adam,
}

/// `[student]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct StudentSection {
    /// Hidden layer sizes.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Epochs.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Optimizer.
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerKind,
    /// Learning rate (default: 1e-3 for Adam, 0.1 for SGD).
    pub lr: Option<f32>,
    /// SGD momentum.
    #[serde(default = "default_momentum")]
    pub momentum: f32,
    /// Weight decay.
    #[serde(default)]
    pub weight_decay: f32,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Warm-up epochs.
    #[serde(default)]
    pub warmup_epochs: f32,
    /// Weight of the distillation term.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Distillation temperature (default: the labels').
    pub temperature: Option<f32>,
    /// Seed.
    #[serde(default)]
    pub seed: u64,
    /// Gradient-norm clipping.
    pub clip_norm: Option<f32>,
    /// Training threads (0: all cores).
    #[serde(default)]
    pub threads: usize,
    /// Leave the rows with these hard labels out of the transfer set (e.g. Hinton et al.'s
    /// omitted-3 experiment); the teacher's soft targets still cover every class.
    #[serde(default)]
    pub exclude_labels: Vec<i64>,
    /// Memory for the training rows in MiB; larger datasets are streamed from disk.
    #[serde(default = "default_budget")]
    pub memory_budget_mib: u64,
}

fn default_budget() -> u64 {
    student::train::DEFAULT_MEMORY_BUDGET_MIB
}

fn default_hidden() -> Vec<usize> {
    vec![800, 800]
}
fn default_epochs() -> usize {
    20
}
fn default_batch() -> usize {
    128
}
fn default_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn default_momentum() -> f32 {
    0.9
}
fn default_alpha() -> f32 {
    0.9
}

/// Builds the optimizer from its name and hyper-parameters.
pub fn optimizer(kind: OptimizerKind, lr: Option<f32>, momentum: f32, weight_decay: f32) -> Optimizer {
    match kind {
        OptimizerKind::Sgd => {
            Optimizer::Sgd(Sgd { lr: lr.unwrap_or(0.1), momentum, weight_decay, ..Default::default() })
        }
        OptimizerKind::Adam => Optimizer::Adam(Adam { lr: lr.unwrap_or(1e-3), weight_decay, ..Default::default() }),
    }
}

impl StudentSection {
    /// The training settings this section describes.
    pub fn settings(&self) -> TrainSettings {
        TrainSettings {
            hidden: self.hidden.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: optimizer(self.optimizer, self.lr, self.momentum, self.weight_decay),
            schedule: self.schedule,
            warmup_epochs: self.warmup_epochs,
            alpha: self.alpha,
            temperature: self.temperature,
            seed: self.seed,
            clip_norm: self.clip_norm,
            exclude_labels: self.exclude_labels.clone(),
            memory_budget_mib: self.memory_budget_mib,
        }
    }
}

/// `[output]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct OutputSection {
    /// Folder for labels, student and report.
    pub dir: PathBuf,
    /// Also export the student and write a compression report (`DIR/report/`).
    #[serde(default)]
    pub report: bool,
    /// The student's folder name inside `dir` (`softlabel run --seed S` makes it `student-seed-S`).
    #[serde(default = "default_student_dir")]
    pub student: String,
}

fn default_student_dir() -> String {
    "student".into()
}

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Pipeline {
    /// Datasets.
    pub data: DataSection,
    /// Teacher and precompute.
    pub teacher: TeacherSection,
    /// Student and training.
    pub student: StudentSection,
    /// Output.
    pub output: OutputSection,
}

impl Pipeline {
    /// Reads and validates a pipeline file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates a pipeline's text; `path` locates relative paths and is named in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut p: Pipeline = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut paths = vec![&mut p.data.train, &mut p.data.test, &mut p.output.dir];
        paths.extend(p.teacher.model.paths_mut());
        if paths.len() == 3 {
            return Err(Error::Config(format!("{}: [teacher] model lists no model", path.display())));
        }
        for f in paths {
            if f.is_relative() {
                *f = normalize(&base.join(&*f));
            }
        }
        crate::precompute::check_temperature(p.teacher.temperature)
            .map_err(|e| Error::Config(format!("{}: [teacher] {e}", path.display())))?;
        p.student.settings().validate().map_err(|e| Error::Config(format!("{}: [student] {e}", path.display())))?;
        if p.teacher.views == 0 {
            return Err(Error::Config(format!("{}: [teacher] views must be >= 1", path.display())));
        }
        p.teacher.view_options().map_err(|e| Error::Config(format!("{}: [teacher] {e}", path.display())))?;
        Ok(p)
    }

    fn teacher_options(&self) -> TeacherOptions {
        TeacherOptions {
            threads: self.teacher.threads,
            ort_lib: None,
            input_name: self.teacher.input_name.clone(),
            output_name: self.teacher.output_name.clone(),
            output_kind: self.teacher.output,
        }
    }

    fn spec(&self) -> DataSpec {
        DataSpec {
            input: self.data.input_column.to_vec(),
            label_column: self.data.label_column.clone(),
            id_column: self.data.id_column.clone(),
            skip_nonfinite: self.data.skip_nonfinite,
        }
    }
}

/// Removes `.` and resolves `..` lexically (`pipelines/../out` -> `out`), keeping leading `..`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// What `run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The teacher file.
    pub teacher: String,
    /// Its sha256.
    pub teacher_sha256: String,
    /// Temperature of the labels.
    pub temperature: f32,
    /// Where the train labels are, and whether they were reused.
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

/// Reuses `out` if it is a complete dataset matching these settings, else (re)computes it.
fn labels_for(
    p: &Pipeline,
    data: &Path,
    out: &Path,
    teacher_sha: &str,
    views: Option<crate::augment::ViewOptions>,
    progress: &dyn Progress,
) -> Result<(SoftLabels, bool, f64)> {
    let spec = p.spec();
    if let Ok(existing) = SoftLabels::open(out) {
        let m: &Manifest = existing.manifest();
        let fingerprint = DataSource::open(data, &spec)?.source_info()?.fingerprint;
        if m.teacher.sha256 == teacher_sha
            && m.temperature == p.teacher.temperature
            && m.source.fingerprint == fingerprint
            && m.class_names == p.teacher.class_names
            && same_views(m.views.as_ref(), views.as_ref())
        {
            tracing::info!(dir = %out.display(), "reusing soft labels");
            return Ok((existing, true, 0.0));
        }
    }
    let start = Instant::now();
    let settings = PrecomputeSettings {
        teachers: p.teacher.model.paths(),
        combine: p.teacher.combine,
        data: data.to_path_buf(),
        spec,
        temperature: p.teacher.temperature,
        out: out.to_path_buf(),
        batch_size: p.teacher.batch_size,
        teacher_options: p.teacher_options(),
        class_names: p.teacher.class_names.clone(),
        writer: WriterOptions::default(),
        resume: true,
        shard: None,
        form: Default::default(),
        no_inputs: false,
        float16: false,
        views,
    };
    // An interrupted earlier run is continued; labels from other settings are replaced.
    if let Err(e) = precompute(&settings, progress) {
        if !matches!(e, Error::Dataset { .. }) {
            return Err(e);
        }
        tracing::warn!("{e}; recomputing {}", out.display());
        let fresh = PrecomputeSettings {
            resume: false,
            writer: WriterOptions { overwrite: true, ..Default::default() },
            ..settings
        };
        precompute(&fresh, progress)?;
    }
    Ok((SoftLabels::open(out)?, false, start.elapsed().as_secs_f64()))
}

/// Runs a whole pipeline. `ort_lib` overrides the ONNX Runtime library.
pub fn run(p: &Pipeline, ort_lib: Option<&Path>, progress: &dyn Progress) -> Result<RunReport> {
    let shas = p.teacher.model.paths().iter().map(|m| crate::dataset::sha256_file(m)).collect::<Result<Vec<_>>>()?;
    let teacher_sha = crate::teacher::ensemble_sha256(&shas, p.teacher.combine);
    if p.output.report && shas.len() > 1 {
        return Err(Error::Config("[output] report = true needs a single teacher model, not an ensemble".into()));
    }
    if let Some(lib) = ort_lib {
        crate::teacher::environment(Some(lib))?;
    }
    let out = &p.output.dir;
    let views = p.teacher.view_options()?;
    let (train_labels, reused, pre_train) =
        labels_for(p, &p.data.train, &out.join("labels-train"), &teacher_sha, views, progress)?;
    let (test_labels, _, pre_test) =
        labels_for(p, &p.data.test, &out.join("labels-test"), &teacher_sha, None, progress)?;

    let settings = p.student.settings();
    let m = train_labels.manifest().clone();
    let rows = TrainingRows::new(&train_labels, &settings, None)?;
    let test_outputs = test_labels.load()?;
    let val = student::train::ValSet {
        inputs: test_outputs.inputs.clone(),
        labels: test_outputs.labels.iter().map(|l| l.unwrap_or(-1)).collect(),
    };
    let has_val_labels = test_outputs.labels.iter().all(Option::is_some);
    let start = Instant::now();
    let student_dir = out.join(&p.output.student);
    // A run interrupted during training continues from its last epoch.
    let cp = student::Checkpointing {
        dir: student_dir.clone(),
        resume: true,
        labels_sha256: train_labels.manifest_sha256()?,
    };
    let td = rows.train_data(&train_labels);
    let val = has_val_labels.then_some(&val);
    let trained =
        with_threads(p.student.threads, || match student::train(&td, &settings, val, Some(&cp), progress) {
            Err(Error::Dataset { path, message }) if path.starts_with(&student_dir) => {
                tracing::warn!("{}: {message}; training from scratch", path.display());
                let fresh = student::Checkpointing { resume: false, ..cp.clone() };
                student::train(&td, &settings, val, Some(&fresh), progress)
            }
            other => other,
        })??;
    let train_seconds = start.elapsed().as_secs_f64();
    let mut info = student_info(&trained, &settings, &train_labels, train_seconds)?;
    student::io::save(&student_dir, &trained.mlp, &mut info, &trained.log)?;
    student::checkpoint::remove(&student_dir)?;

    let test_source = DataSource::open(test_labels.dir(), &DataSpec::new(crate::store::columns::INPUT))?;
    let test = evaluate(&trained.mlp, &test_source, Some(&test_outputs), progress)?;
    let report = if p.output.report {
        let settings = crate::report::ReportSettings {
            teacher: p.teacher.model.paths()[0].clone(),
            student: student_dir.clone(),
            data: test_labels.dir().to_path_buf(),
            spec: DataSpec::new(crate::store::columns::INPUT),
            labels: Some(test_labels.dir().to_path_buf()),
            out: out.join(if p.output.student == "student" {
                "report".to_string()
            } else {
                format!("{}-report", p.output.student)
            }),
            threads: p.teacher.threads,
            latency_runs: 200,
        };
        Some(crate::report::report(&settings, progress)?)
    } else {
        None
    };
    Ok(RunReport {
        teacher: p.teacher.model.paths().iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" + "),
        teacher_sha256: teacher_sha,
        temperature: m.temperature,
        train_labels: train_labels.dir().display().to_string(),
        train_labels_reused: reused,
        precompute_seconds: pre_train + pre_test,
        student: student_dir.display().to_string(),
        student_dims: trained.mlp.dims(),
        student_parameters: trained.mlp.num_parameters(),
        train_seconds,
        test,
        report,
    })
}

/// Whether stored views match the requested ones (the image layout may have come from the teacher).
fn same_views(stored: Option<&crate::augment::Views>, wanted: Option<&crate::augment::ViewOptions>) -> bool {
    match (stored, wanted) {
        (None, None) => true,
        (Some(s), Some(w)) => {
            s.count == w.count && s.max_shift == w.max_shift && s.seed == w.seed && w.image.is_none_or(|i| i == s.image)
        }
        _ => false,
    }
}

/// A dataset's training rows: in memory when they fit `memory_budget_mib` (or must be joined to their
/// inputs), else streamed.
pub enum TrainingRows {
    /// Loaded, filtered (`exclude_labels`) and joined.
    Memory(Box<crate::store::TeacherOutputs>),
    /// Streamed in windows of this many rows.
    Stream(usize),
}

impl TrainingRows {
    /// Decides and, for memory, loads. `join`: the source to join a label-only dataset's inputs from
    /// (`train --inputs`) and whether to ignore its fingerprint; joined data is always held in memory.
    pub fn new(labels: &SoftLabels, settings: &TrainSettings, join: Option<(&Path, bool)>) -> Result<Self> {
        let m = labels.manifest();
        if join.is_none() && !m.input.stored {
            return Err(Error::dataset(
                labels.dir(),
                "was made with --no-inputs: pass --inputs with the data it was made from",
            ));
        }
        if join.is_none() {
            if let Some(window) = student::train::stream_window(m, settings) {
                tracing::info!(
                    window,
                    budget_mib = settings.memory_budget_mib,
                    "rows exceed the memory budget: streaming"
                );
                return Ok(TrainingRows::Stream(window));
            }
        }
        let mut data = labels.load_excluding(&settings.exclude_labels)?;
        if !settings.exclude_labels.is_empty() {
            tracing::info!(rows = data.len(), classes = ?settings.exclude_labels, "excluded labels from the transfer set");
            if data.is_empty() {
                return Err(Error::dataset(
                    labels.dir(),
                    format!("no rows left after excluding labels {:?}", settings.exclude_labels),
                ));
            }
        }
        if let Some((path, ignore_fingerprint)) = join {
            let spec = DataSpec {
                input: m.input.source_column.split(',').map(str::to_string).collect(),
                label_column: None,
                id_column: m.id_column.clone(),
                skip_nonfinite: false,
            };
            data.join_inputs(m, &DataSource::open(path, &spec)?, path, ignore_fingerprint)?;
        }
        Ok(TrainingRows::Memory(Box::new(data)))
    }

    /// What [`student::train`] takes.
    pub fn train_data<'a>(&'a self, labels: &'a SoftLabels) -> student::TrainData<'a> {
        let m = labels.manifest();
        student::TrainData {
            source: match self {
                TrainingRows::Memory(d) => student::train::TrainSource::Memory(d),
                TrainingRows::Stream(window_rows) => {
                    student::train::TrainSource::Stream { labels, window_rows: *window_rows }
                }
            },
            num_classes: m.num_classes,
            temperature: m.temperature,
            origin: labels.dir(),
        }
    }
}

/// Runs `f` on a rayon pool of `threads` threads (0: the global pool).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    if threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
    Ok(pool.install(f))
}

/// The description saved next to a trained student.
pub fn student_info(
    trained: &student::TrainedStudent,
    settings: &TrainSettings,
    labels: &SoftLabels,
    train_seconds: f64,
) -> Result<student::StudentInfo> {
    let m = labels.manifest();
    Ok(student::StudentInfo {
        format: "softlabel-student".into(),
        version: 1,
        created_by: format!("softlabel {}", env!("CARGO_PKG_VERSION")),
        dims: trained.mlp.dims(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_parent_dirs_lexically() {
        assert_eq!(normalize(Path::new("pipelines/../out/mnist")), PathBuf::from("out/mnist"));
        assert_eq!(normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("/a/../b")), PathBuf::from("/b"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
    }
}
