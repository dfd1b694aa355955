//! The soft-label dataset: a folder with `_manifest.json` and `part-NNNNN.parquet` files.
//! SCHEMA.md is the contract; this module is its implementation.

mod decode;
mod reader;
mod rows;
mod writer;

pub(crate) use decode::read_views;
pub use reader::{Block, SoftLabels, Windows};
pub use rows::{Outputs, TeacherOutputs};
pub(crate) use writer::{prepare_dir, WRITE_BLOCK};
pub use writer::{Resumed, ScoredRows, SoftLabelWriter, WriterOptions};

use std::path::Path;

use arrow_schema::{DataType, Field, Schema};

use crate::data::{ElementType, SourceInfo};
use crate::error::{Error, Result};

/// The schema version this build writes. Readers accept every version with the same major number.
pub const SCHEMA_VERSION: &str = "1.0";
/// The schema version of sparse (top-k or sampled) datasets, which add columns and the `form` field.
pub const SCHEMA_VERSION_SPARSE: &str = "1.1";
/// The schema version of datasets with augmented views (`precompute --views`), which add the `view`,
/// `shift_x` and `shift_y` columns and the `views` field.
pub const SCHEMA_VERSION_VIEWS: &str = "1.2";
/// The major schema version this build reads.
pub const SCHEMA_MAJOR: u32 = 1;
/// The manifest's file name inside a dataset folder.
pub const MANIFEST: &str = "_manifest.json";
/// The progress journal of an unfinished precompute (removed when the manifest is written).
pub const PROGRESS: &str = "_progress.json";
/// The value of the manifest's `format` field.
pub const FORMAT: &str = "softlabel";

/// Column names.
pub mod columns {
    /// Row id (uint64).
    pub const ID: &str = "id";
    /// Hard label (int64, nullable).
    pub const LABEL: &str = "label";
    /// The input row (fixed_size_list of the source's element type).
    pub const INPUT: &str = "input";
    /// Raw teacher logits (`fixed_size_list<float32>[K]`).
    pub const LOGITS: &str = "logits";
    /// softmax(logits / T) (`fixed_size_list<float32>[K]`).
    pub const SOFT: &str = "soft";
    /// Top-k: class indices, by descending logit (`fixed_size_list<uint32>[k]`).
    pub const TOPK_INDEX: &str = "topk_index";
    /// Top-k: their raw logits (`fixed_size_list<float32>[k]`).
    pub const TOPK_LOGIT: &str = "topk_logit";
    /// Top-k: logsumexp(logits / T) over all classes (float64).
    pub const LOGSUMEXP_T: &str = "logsumexp_t";
    /// Views: the view number (uint16; 0 is the source row as it is).
    pub const VIEW: &str = "view";
    /// Views: horizontal shift in pixels (int16; positive moves the content right).
    pub const SHIFT_X: &str = "shift_x";
    /// Views: vertical shift in pixels (int16; positive moves the content down).
    pub const SHIFT_Y: &str = "shift_y";
    /// Sampled: the k classes drawn from softmax(logits / T), ascending (`fixed_size_list<uint32>[k]`).
    pub const SAMPLE_INDEX: &str = "sample_index";
}

/// What the dataset's teacher was.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherInfo {
    /// The model's file name.
    pub file: String,
    /// sha256 of the model file.
    pub sha256: String,
    /// The input the data was fed to.
    pub input_name: String,
    /// The input shape the model declares (-1: dynamic).
    pub input_shape: Vec<i64>,
    /// The output read as logits.
    pub output_name: String,
    /// What that output held (probabilities are stored as log p).
    #[serde(default = "logits_kind")]
    pub output_kind: crate::teacher::OutputKind,
}

fn logits_kind() -> crate::teacher::OutputKind {
    crate::teacher::OutputKind::Logits
}

/// The members of a teacher ensemble and how their outputs were combined.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleInfo {
    /// mean-logits or mean-probs.
    pub combine: crate::teacher::Combine,
    /// Every member, in order.
    pub members: Vec<TeacherInfo>,
}

/// How the stored input looks and where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputInfo {
    /// The source column(s) the input was read from.
    pub source_column: String,
    /// Element type of the stored `input` column.
    pub dtype: ElementType,
    /// Values per row.
    pub width: usize,
    /// The per-row shape fed to the teacher (without the batch dimension).
    pub shape: Vec<usize>,
    /// Whether the `input` column is stored (false with `--no-inputs`: join the source by id).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub stored: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One part file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartInfo {
    /// File name inside the dataset folder.
    pub file: String,
    /// Rows in the part.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the file.
    pub sha256: String,
    /// Smallest id in the part.
    pub min_id: u64,
    /// Largest id in the part.
    pub max_id: u64,
}

/// `_manifest.json`: written last, atomically, so a folder with a manifest is a complete dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always "softlabel".
    pub format: String,
    /// "MAJOR.MINOR".
    pub schema_version: String,
    /// "softlabel VERSION".
    pub created_by: String,
    /// The temperature `soft` was computed with.
    pub temperature: f32,
    /// K, the number of classes.
    pub num_classes: usize,
    /// Class names, when known.
    pub class_names: Option<Vec<String>>,
    /// The teacher.
    pub teacher: TeacherInfo,
    /// The stored input.
    pub input: InputInfo,
    /// The source's label column, if it had one.
    pub label_column: Option<String>,
    /// The source's id column (else ids are row indices in the source).
    pub id_column: Option<String>,
    /// The input data's identity.
    pub source: SourceInfo,
    /// Total rows.
    pub rows: u64,
    /// Rows with a label.
    pub labeled_rows: u64,
    /// The part files, in order.
    pub parts: Vec<PartInfo>,
    /// Source rows skipped for NaN or infinite inputs (`--skip-nonfinite`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_nonfinite_rows: u64,
    /// How the teacher's outputs are stored (absent: dense).
    #[serde(default, skip_serializing_if = "LabelForm::is_dense")]
    pub form: LabelForm,
    /// Logits and probabilities stored as float16 (`--float16`) instead of float32.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub float16: bool,
    /// For a teacher ensemble: its members (`teacher` then describes the ensemble as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleInfo>,
    /// Augmented views (`precompute --views`): every source row stored `count` times, shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<crate::augment::Views>,
    /// Which shard of the source this dataset holds (`--shard I/N`); absent for a whole dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// sha256 of this manifest's compact JSON with `checksum` set to "": any edit by hand shows.
    #[serde(default)]
    pub checksum: String,
}

/// Shard `index` of `count`: the rows whose id hashes to `index` (see [`Shard::owns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// 0-based shard index, < count.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` with 0 <= I < N.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Config(format!("--shard '{text}' is not I/N with 0 <= I < N (e.g. 0/4)"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard owns the row with `id`: splitmix64(id) mod count == index. Stable across runs,
    /// machines and versions (part of the schema contract).
    pub fn owns(&self, id: u64) -> bool {
        crate::util::splitmix64(id) % u64::from(self.count) == u64::from(self.index)
    }
}

impl Manifest {
    /// The checksum of the manifest's content (see [`Manifest::checksum`]).
    pub fn compute_checksum(&self) -> String {
        // Through the text a reader will parse, so numbers are compared as written (an f32 0.3 is
        // written "0.3", not its f64 widening).
        let text = serde_json::to_vec(self).unwrap_or_default();
        checksum_of(&serde_json::from_slice(&text).unwrap_or_default())
    }

    /// Sets `checksum` for the current content.
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// The manifest as written to `_manifest.json`.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))
    }

    /// The Parquet key-value metadata every part carries (the manifest's fields, minus the parts list).
    pub fn key_values(&self) -> Vec<(String, String)> {
        let json = |v: &dyn erased::Json| v.to_json();
        let mut kv = vec![
            ("softlabel.schema_version".to_string(), self.schema_version.clone()),
            ("softlabel.created_by".into(), self.created_by.clone()),
            ("softlabel.temperature".into(), json(&self.temperature)),
            ("softlabel.num_classes".into(), self.num_classes.to_string()),
            ("softlabel.teacher_sha256".into(), self.teacher.sha256.clone()),
            ("softlabel.teacher_file".into(), self.teacher.file.clone()),
            ("softlabel.teacher".into(), json(&self.teacher)),
            ("softlabel.input_shape".into(), json(&self.input.shape)),
            ("softlabel.input".into(), json(&self.input)),
            ("softlabel.source".into(), json(&self.source)),
        ];
        if let Some(names) = &self.class_names {
            kv.push(("softlabel.class_names".into(), json(names)));
        }
        if let Some(shard) = &self.shard {
            kv.push(("softlabel.shard".into(), json(shard)));
        }
        if !self.form.is_dense() {
            kv.push(("softlabel.form".into(), json(&self.form)));
        }
        if self.float16 {
            kv.push(("softlabel.float16".into(), "true".into()));
        }
        if let Some(views) = &self.views {
            kv.push(("softlabel.views".into(), json(views)));
        }
        if let Some(ensemble) = &self.ensemble {
            kv.push(("softlabel.ensemble".into(), json(ensemble)));
        }
        kv
    }

    /// The Arrow schema of every part, carrying [`Manifest::key_values`] as its metadata (so readers
    /// that look at the embedded Arrow schema, like pyarrow's `schema.metadata`, see them too).
    pub fn arrow_schema(&self) -> Schema {
        part_schema(
            self.input.dtype,
            if self.input.stored { Some(self.input.width) } else { None },
            self.num_classes,
            self.form,
            self.float16,
            self.views.is_some(),
        )
        .with_metadata(self.key_values().into_iter().collect::<std::collections::HashMap<_, _>>())
    }

    /// Reads and checks `DIR/_manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(Error::dataset(dir, "no such soft-label dataset folder"));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::dataset(&path, "missing: the folder is not a complete soft-label dataset (an interrupted precompute leaves no manifest)")
            } else {
                Error::io(&path, e)
            }
        })?;
        Self::parse(&text, &path)
    }

    /// Parses and checks a manifest's text; `path` is named in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::dataset(&path, format!("not valid JSON: {e}")))?;
        // Check format and version before the fields, so a newer major version gets the right message.
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
            return Err(Error::dataset(&path, format!("field 'format' is not \"{FORMAT}\"")));
        }
        let version = value.get("schema_version").and_then(|v| v.as_str()).unwrap_or("");
        let major: Option<u32> = version.split('.').next().and_then(|m| m.parse().ok());
        match major {
            Some(SCHEMA_MAJOR) => {}
            Some(m) if m > SCHEMA_MAJOR => {
                return Err(Error::dataset(
                    &path,
                    format!(
                    "schema version {version} is newer than this softlabel reads ({SCHEMA_VERSION}); upgrade softlabel"
                ),
                ))
            }
            _ => return Err(Error::dataset(&path, format!("unsupported schema version '{version}'"))),
        }
        let m: Manifest = serde_json::from_value(value.clone())
            .map_err(|e| Error::dataset(&path, format!("invalid manifest: {e}")))?;
        m.validate(&path)?;
        if m.checksum != checksum_of(&value) {
            return Err(Error::dataset(
                &path,
                "checksum does not match the content: the manifest was edited by hand or damaged",
            ));
        }
        Ok(m)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::dataset(path, msg));
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("temperature {} is not finite and > 0", self.temperature));
        }
        if self.num_classes == 0 {
            return bad("num_classes is 0".into());
        }
        match self.form {
            LabelForm::TopK { k } if k == 0 || k > self.num_classes => {
                return bad(format!("top-k {k} is not in 1..={}", self.num_classes))
            }
            LabelForm::Sampled { k: 0, .. } => return bad("sample k is 0".into()),
            _ => {}
        }
        if let Some(names) = &self.class_names {
            if names.len() != self.num_classes {
                return bad(format!("{} class names for {} classes", names.len(), self.num_classes));
            }
        }
        if let Some(v) = &self.views {
            v.validate(self.input.width).map_err(|e| Error::dataset(path, format!("views: {e}")))?;
        }
        if self.input.shape.iter().product::<usize>() != self.input.width {
            return bad(format!("input shape {:?} does not hold {} values", self.input.shape, self.input.width));
        }
        let total: u64 = self.parts.iter().map(|p| p.rows).sum();
        if total != self.rows {
            return bad(format!("parts hold {total} rows, manifest says {}", self.rows));
        }
        for p in &self.parts {
            if p.file.contains('/') || p.file.contains('\\') || p.file.starts_with('.') {
                return bad(format!("part name '{}' is not a plain file name", p.file));
            }
        }
        Ok(())
    }
}

/// sha256 of a manifest's JSON as written (keys sorted, compact, `checksum` set to ""). Computed on the
/// JSON value, not the struct, so fields a later version adds (absent from older files) never change an
/// older manifest's checksum.
fn checksum_of(value: &serde_json::Value) -> String {
    let mut v = value.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("checksum".into(), serde_json::Value::String(String::new()));
    }
    crate::util::sha256_hex(&serde_json::to_vec(&v).unwrap_or_default())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The Arrow schema of a part; `width` is `None` when inputs are not stored.
pub fn part_schema(
    input: ElementType,
    width: Option<usize>,
    classes: usize,
    form: LabelForm,
    float16: bool,
    views: bool,
) -> Schema {
    let float = if float16 { DataType::Float16 } else { DataType::Float32 };
    let list =
        |dt: DataType, n: usize| DataType::FixedSizeList(std::sync::Arc::new(Field::new("item", dt, false)), n as i32);
    let mut fields =
        vec![Field::new(columns::ID, DataType::UInt64, false), Field::new(columns::LABEL, DataType::Int64, true)];
    if views {
        fields.extend([
            Field::new(columns::VIEW, DataType::UInt16, false),
            Field::new(columns::SHIFT_X, DataType::Int16, false),
            Field::new(columns::SHIFT_Y, DataType::Int16, false),
        ]);
    }
    if let Some(width) = width {
        fields.push(Field::new(columns::INPUT, list(input.to_arrow(), width), false));
    }
    match form {
        LabelForm::Dense => fields.extend([
            Field::new(columns::LOGITS, list(float.clone(), classes), false),
            Field::new(columns::SOFT, list(float, classes), false),
        ]),
        LabelForm::TopK { k } => fields.extend([
            Field::new(columns::TOPK_INDEX, list(DataType::UInt32, k), false),
            Field::new(columns::TOPK_LOGIT, list(float, k), false),
            Field::new(columns::LOGSUMEXP_T, DataType::Float64, false),
        ]),
        LabelForm::Sampled { k, .. } => {
            fields.push(Field::new(columns::SAMPLE_INDEX, list(DataType::UInt32, k), false))
        }
    }
    Schema::new(fields)
}

/// How the teacher's outputs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LabelForm {
    /// All K logits and softened probabilities (`logits`, `soft`).
    #[default]
    Dense,
    /// The k largest logits (`topk_index`, `topk_logit`, descending) and the exact normaliser
    /// `logsumexp_t` = logsumexp(logits / T) over all K classes.
    TopK {
        /// Classes kept per row.
        k: usize,
    },
    /// k classes drawn with replacement from softmax(logits / T) (`sample_index`, ascending), seeded per
    /// row by (seed, id): the mean of -log q over the draws is an unbiased estimate of the cross-entropy.
    Sampled {
        /// Draws per row.
        k: usize,
        /// Seed of the draws.
        seed: u64,
    },
}

impl LabelForm {
    /// Whether this is the dense form.
    pub fn is_dense(&self) -> bool {
        *self == LabelForm::Dense
    }
}

mod erased {
    /// Serialises any value as compact JSON (a tiny object-safe wrapper for the key-value builder).
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(t: f32) -> String {
        let m = Manifest {
            format: FORMAT.into(),
            schema_version: SCHEMA_VERSION.into(),
            created_by: "softlabel test".into(),
            temperature: t,
            num_classes: 2,
            class_names: None,
            teacher: TeacherInfo {
                file: "t.onnx".into(),
                sha256: "ab".into(),
                input_name: "x".into(),
                input_shape: vec![-1, 2],
                output_name: "y".into(),
                output_kind: crate::teacher::OutputKind::Logits,
            },
            input: InputInfo {
                source_column: "input".into(),
                dtype: ElementType::F32,
                width: 2,
                shape: vec![2],
                stored: true,
            },
            label_column: None,
            id_column: None,
            source: SourceInfo { files: vec![], fingerprint: "f".into() },
            rows: 0,
            labeled_rows: 0,
            parts: vec![],
            skipped_nonfinite_rows: 0,
            form: LabelForm::Dense,
            float16: false,
            ensemble: None,
            views: None,
            shard: None,
            checksum: String::new(),
        };
        let mut m = m;
        m.seal();
        String::from_utf8(m.to_json().unwrap()).unwrap()
    }

    #[test]
    fn checksum_survives_round_trips_and_fields_added_later() {
        for t in [4.0, 0.3, 1e-3, 123.456] {
            let text = written(t);
            Manifest::parse(&text, Path::new("m")).unwrap_or_else(|e| panic!("T = {t}: {e}"));
        }
        // A manifest written before `output_kind` existed (the field absent) still checks out, once its
        // checksum was computed without the field.
        let mut v: serde_json::Value = serde_json::from_str(&written(2.0)).unwrap();
        v["teacher"].as_object_mut().unwrap().remove("output_kind");
        v["checksum"] = checksum_of(&v).into();
        assert!(Manifest::parse(&v.to_string(), Path::new("m")).is_ok());
        // Any edit shows.
        v["created_by"] = "someone else".into();
        let err = Manifest::parse(&v.to_string(), Path::new("m")).unwrap_err().to_string();
        assert!(err.contains("edited by hand"), "{err}");
    }
}
