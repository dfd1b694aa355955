//! Pipeline files (`softlabel run PIPELINE.toml`): `[data]`, `[teacher]`, `[student]` and `[output]`,
//! unknown keys rejected, relative paths resolved against the file's folder, every section validated
//! before anything runs. `[teacher]` takes every `precompute` setting and `[student]` every `train`
//! setting, under the same names as the flags (with `_` for `-`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data::Columns;
use super::{DataConfig, Origin, TeacherConfig, TrainConfig, TrainSettings};
use crate::error::{Error, Result};

/// `[data]`: the splits and their columns (the keys of [`DataConfig`]; serde's `flatten` would lose
/// `deny_unknown_fields`, so they are listed here and turned into a [`DataConfig`] by
/// [`DataSection::columns`]).
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
    /// Image folders: resize the shorter side to this, then centre-crop to the teacher's size.
    #[serde(default)]
    pub resize: Option<u32>,
    /// Image folders: multiply pixel values by this (float32 rows), before `mean` and `std`.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Image folders: per-channel means.
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    /// Image folders: per-channel standard deviations.
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// Image folders: skip (and count) images that do not decode.
    #[serde(default)]
    pub skip_bad_images: bool,
    /// `.npy` training data: its hard labels, a `.npy` file of one integer per row.
    #[serde(default)]
    pub train_labels_npy: Option<PathBuf>,
    /// `.npy` test data: its hard labels.
    #[serde(default)]
    pub test_labels_npy: Option<PathBuf>,
    /// `.npz` data: the input array (the same name in both splits' archives).
    #[serde(default)]
    pub npz_key: Option<String>,
    /// `.npz` data: the labels array.
    #[serde(default)]
    pub npz_labels: Option<String>,
}

fn default_input() -> Columns {
    DataConfig::default().input_column
}

impl DataSection {
    /// How the training (`train`) or test split is read: the columns, and its `.npy` labels file.
    pub fn split_spec(&self, train: bool) -> crate::data::DataSpec {
        let mut spec = self.columns().spec();
        spec.labels_npy = if train { self.train_labels_npy.clone() } else { self.test_labels_npy.clone() };
        spec
    }

    /// The columns, as the other stages take them.
    pub fn columns(&self) -> DataConfig {
        DataConfig {
            input_column: self.input_column.clone(),
            label_column: self.label_column.clone(),
            id_column: self.id_column.clone(),
            skip_nonfinite: self.skip_nonfinite,
            npz_key: self.npz_key.clone(),
            npz_labels: self.npz_labels.clone(),
            images: crate::data::images::ImageOptions {
                resize: self.resize,
                scale: self.scale,
                mean: self.mean.clone(),
                std: self.std.clone(),
                skip_bad_images: self.skip_bad_images,
            },
        }
    }
}

/// `[output]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct OutputSection {
    /// Folder for labels, student and report.
    pub dir: PathBuf,
    /// Also export the student and write a compression report.
    #[serde(default)]
    pub report: bool,
    /// The report also measures the student's int8 export (`report --int8`).
    #[serde(default)]
    pub int8: bool,
    /// The student's folder name inside `dir`.
    #[serde(default = "default_student_dir")]
    pub student: String,
}

impl OutputSection {
    /// The compression report's folder: `DIR/report`, or `DIR/NAME-report` for another student name.
    pub fn report_dir(&self) -> PathBuf {
        if self.student == default_student_dir() {
            self.dir.join("report")
        } else {
            self.dir.join(format!("{}-report", self.student))
        }
    }
}

fn default_student_dir() -> String {
    "student".into()
}

/// `[sweep]`: the student stage trains a grid over `[student]` and keeps the best run on validation
/// (rows held out of the training labels; `[student] val_fraction`, 0.1 by default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SweepSection {
    /// Each `[student]` key with the values it takes.
    #[serde(default)]
    pub grid: toml::Table,
    /// Runs listed one by one (`[[sweep.run]]`), each over `[student]`.
    #[serde(default)]
    pub run: Vec<toml::Table>,
    /// Runs trained at the same time (0: as many as the threads).
    #[serde(default)]
    pub parallel: usize,
}

impl SweepSection {
    /// The sweep over `student` as its base (its `threads` left to the sweep).
    pub fn spec(&self, student: &TrainConfig) -> Result<crate::sweep::SweepSpec> {
        let mut base = match toml::Value::try_from(student) {
            Ok(toml::Value::Table(t)) => t,
            _ => return Err(Error::Internal("[student] as a table".into())),
        };
        base.remove("threads");
        Ok(crate::sweep::SweepSpec { base, grid: self.grid.clone(), runs: self.run.clone(), parallel: self.parallel })
    }
}

/// A pipeline file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PipelineFile {
    /// Datasets.
    pub data: DataSection,
    /// Teacher and precompute.
    pub teacher: TeacherConfig,
    /// Student and training.
    #[serde(default)]
    pub student: TrainConfig,
    /// Output.
    pub output: OutputSection,
    /// A sweep as the student stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSection>,
}

/// Settings given on the command line that override the file (`run --seed`, `run --root`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineOverrides {
    /// Train with this seed, into `DIR/student-seed-S` with the summary `DIR/report-seed-S.json`.
    pub seed: Option<u64>,
    /// The folder every path of the pipeline must lie in (default: the pipeline file's folder). A
    /// pipeline file can come from someone else: it reads and writes only under its root.
    pub root: Option<PathBuf>,
    /// Replace finished soft labels or a finished student made with other settings (`run --overwrite`);
    /// without it they are refused, never silently replaced.
    pub overwrite: bool,
}

/// A loaded, validated pipeline: the file (paths resolved, overrides applied) and the training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The file it came from.
    pub path: PathBuf,
    /// Its content, paths resolved and overrides applied.
    pub file: PipelineFile,
    /// `[student]`, validated.
    pub train: TrainSettings,
    /// The summary's file name inside `[output] dir`.
    pub summary: String,
    /// Replace finished outputs made otherwise (`run --overwrite`).
    pub overwrite: bool,
}

/// The largest pipeline file read (a real one is a page of TOML).
pub const MAX_PIPELINE_BYTES: u64 = 1 << 20;

impl Pipeline {
    /// Reads and validates a pipeline file; relative paths become relative to its folder.
    pub fn load(path: &Path, overrides: &PipelineOverrides) -> Result<Self> {
        let text =
            crate::util::read_text_bounded(path, crate::util::Links::Follow, MAX_PIPELINE_BYTES, "a pipeline file")?;
        Self::parse(&text, path, overrides)
    }

    /// Parses and validates a pipeline's text; `path` locates relative paths and is named in errors.
    pub fn parse(text: &str, path: &Path, overrides: &PipelineOverrides) -> Result<Self> {
        let mut f: PipelineFile = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        // With `[teacher] inputs`, `[data] input_column` names the mapped column that is stored and learned
        // from; it may be left out when one column is mapped.
        if let [only] = f.teacher.inputs.as_slice() {
            if f.data.input_column == default_input() {
                f.data.input_column = Columns::One(only.column.clone());
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut paths = vec![&mut f.data.train, &mut f.data.test, &mut f.output.dir];
        paths.extend(f.data.train_labels_npy.as_mut());
        paths.extend(f.data.test_labels_npy.as_mut());
        paths.extend(f.teacher.model.paths_mut());
        paths.extend(f.teacher.vocab_file.as_mut());
        for p in paths {
            if p.is_relative() {
                *p = normalize(&base.join(&*p));
            }
        }
        confine(&f, path, overrides.root.as_deref().unwrap_or(base))?;
        let summary = match overrides.seed {
            Some(seed) => {
                f.student.seed = seed;
                f.output.student = format!("student-seed-{seed}");
                format!("report-seed-{seed}.json")
            }
            None if f.output.student == default_student_dir() => "report.json".to_string(),
            // Another student name shares the folder's labels but keeps its own summary.
            None => format!("{}-report.json", f.output.student),
        };
        let section = |section| Origin::File { path: path.to_path_buf(), section };
        // Every [teacher] setting is checked now, before any model loads (the paths are placeholders).
        let dir = f.output.dir.clone();
        f.teacher.validate(
            &section("teacher"),
            f.data.train.clone(),
            f.data.split_spec(true),
            dir,
            &Default::default(),
        )?;
        let train = f.student.validate(&section("student"))?;
        if let Some(sweep) = &f.sweep {
            let spec = sweep.spec(&f.student)?;
            spec.expand(true).map_err(|e| Error::Config(format!("{}: [sweep] {e}", path.display())))?;
        } else if train.holdout.is_none() && (train.keep == super::Keep::Best || train.early_stop.is_some()) {
            return Err(section("student").error_about(
                "[student] keep = \"best\" and early_stop need val_fraction: a pipeline's test split must not \
                 choose the epoch its test accuracy is then measured on",
            ));
        }
        if f.output.report && f.teacher.model.paths().len() > 1 {
            return Err(section("output").error("report", "= true needs a single teacher model, not an ensemble"));
        }
        Ok(Pipeline { path: path.to_path_buf(), file: f, train, summary, overwrite: overrides.overwrite })
    }

    /// Where `[teacher]` errors point.
    pub fn teacher_origin(&self) -> Origin {
        Origin::File { path: self.path.clone(), section: "teacher" }
    }
}

/// Refuses a path of the pipeline that resolves (links followed) outside `root`, and a student folder
/// name that is not a plain name.
fn confine(f: &PipelineFile, path: &Path, root: &Path) -> Result<()> {
    let at = |section| Origin::File { path: path.to_path_buf(), section };
    let student = Path::new(&f.output.student);
    if student.components().count() != 1
        || !matches!(student.components().next(), Some(std::path::Component::Normal(_)))
    {
        return Err(at("output").error("student", format!("= {:?} is not a plain folder name", f.output.student)));
    }
    let root_abs = crate::util::resolve(root)?;
    let models = f.teacher.model.paths();
    let mut named: Vec<(&'static str, &'static str, &Path)> =
        vec![("data", "train", &f.data.train), ("data", "test", &f.data.test), ("output", "dir", &f.output.dir)];
    named.extend(models.iter().map(|m| ("teacher", "model", m.as_path())));
    named.extend(f.data.train_labels_npy.iter().map(|p| ("data", "train_labels_npy", p.as_path())));
    named.extend(f.data.test_labels_npy.iter().map(|p| ("data", "test_labels_npy", p.as_path())));
    named.extend(f.teacher.vocab_file.iter().map(|p| ("teacher", "vocab_file", p.as_path())));
    for (section, key, p) in named {
        let abs = crate::util::resolve(p)?;
        if !abs.starts_with(&root_abs) {
            return Err(at(section).error(
                key,
                format!(
                    "= {} lies outside the pipeline's root {}; a pipeline reads and writes only under its root \
                     (its own folder unless `run --root DIR` names another)",
                    p.display(),
                    root_abs.display()
                ),
            ));
        }
    }
    Ok(())
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

    const MINIMAL: &str =
        "[data]\ntrain = 'a'\ntest = 'b'\n[teacher]\nmodel = 't.onnx'\ntemperature = 2.0\n[output]\ndir = 'o'\n";

    #[test]
    fn every_section_is_checked_and_named() {
        let p = Path::new("p/x.toml");
        let ok = Pipeline::parse(MINIMAL, p, &Default::default()).unwrap();
        assert_eq!(ok.file.data.train, PathBuf::from("p/a"));
        assert_eq!(ok.train, TrainConfig::default().validate(&Origin::Flags).unwrap());
        let typo = MINIMAL.replace("[data]\n", "[data]\ninput_colum = 'x'\n");
        let e = Pipeline::parse(&typo, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("unknown field `input_colum`"), "{e}");
        let bad = format!("{MINIMAL}[student]\nepochs = 0\n");
        let e = Pipeline::parse(&bad, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("p/x.toml: [student] epochs must be > 0"), "{e}");
        let both = MINIMAL.replace("temperature = 2.0", "temperature = 2.0\ntop_k = 3\nsample_k = 2");
        let e = Pipeline::parse(&both, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("p/x.toml: [teacher] top_k and [teacher] sample_k exclude each other"), "{e}");
    }

    #[test]
    fn teacher_inputs_feed_every_model_input_and_the_data_input_is_one_of_them() {
        let p = Path::new("p/x.toml");
        let inputs = "temperature = 2.0\ninputs = { z_ids = 'ids', a_mask = 'mask' }";
        let two = MINIMAL.replace("temperature = 2.0", inputs).replace("[data]\n", "[data]\ninput_column = 'ids'\n");
        let ok = Pipeline::parse(&two, p, &Default::default()).unwrap();
        let settings = |ok: &Pipeline| {
            ok.file.teacher.validate(
                &Origin::File { path: p.into(), section: "teacher" },
                "d".into(),
                ok.file.data.columns().spec(),
                "o".into(),
                &Default::default(),
            )
        };
        let s = settings(&ok).unwrap();
        assert_eq!(s.teacher_options.input_name.as_deref(), Some("z_ids"));
        assert_eq!(s.teacher_options.extra_inputs, ["a_mask"]);
        assert_eq!(s.spec.input, ["ids"]);
        assert_eq!(s.spec.extra_inputs, ["mask"]);
        // Several columns mapped and none named as the data's input: refused, naming the key to set.
        let unnamed = MINIMAL.replace("temperature = 2.0", inputs);
        let e = Pipeline::parse(&unnamed, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("the data's input column 'input' is none of the columns [teacher] inputs feeds"), "{e}");
        assert!(e.contains("[data] input_column"), "{e}");
        // One column mapped: it is the data's input.
        let one = MINIMAL.replace("temperature = 2.0", "temperature = 2.0\ninputs = { x = 'pixels' }");
        let ok = Pipeline::parse(&one, p, &Default::default()).unwrap();
        assert_eq!(ok.file.data.input_column, Columns::One("pixels".into()));
        let twice = two.replace("a_mask = 'mask'", "a_mask = 'ids'");
        let e = Pipeline::parse(&twice, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("p/x.toml: [teacher] inputs feeds column 'ids' to two teacher inputs"), "{e}");
        let with_name = one.replace("[teacher]\n", "[teacher]\ninput_name = 'x'\n");
        let e = Pipeline::parse(&with_name, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("[teacher] inputs and [teacher] input_name exclude each other"), "{e}");
    }

    #[test]
    fn paths_outside_the_root_are_refused_unless_a_root_allows_them() {
        let outside = MINIMAL.replace("dir = 'o'", "dir = '../../elsewhere'");
        let p = Path::new("p/x.toml");
        let e = Pipeline::parse(&outside, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("p/x.toml: [output] dir = ../elsewhere lies outside the pipeline's root"), "{e}");
        let up = MINIMAL.replace("model = 't.onnx'", "model = '../t.onnx'");
        let e = Pipeline::parse(&up, p, &Default::default()).unwrap_err().to_string();
        assert!(e.contains("[teacher] model = t.onnx lies outside"), "{e}");
        let root = PipelineOverrides { root: Some(PathBuf::from(".")), ..Default::default() };
        assert!(Pipeline::parse(&up, p, &root).is_ok());
        let sneaky = MINIMAL.replace("dir = 'o'", "dir = 'o'\nstudent = '../../x'");
        let e = Pipeline::parse(&sneaky, p, &root).unwrap_err().to_string();
        assert!(e.contains("[output] student = \"../../x\" is not a plain folder name"), "{e}");
    }

    #[test]
    fn a_seed_override_trains_into_its_own_folder() {
        let p =
            Pipeline::parse(MINIMAL, Path::new("x.toml"), &PipelineOverrides { seed: Some(4), ..Default::default() })
                .unwrap();
        assert_eq!((p.train.seed, p.file.output.student.as_str()), (4, "student-seed-4"));
        assert_eq!(p.summary, "report-seed-4.json");
    }
}
