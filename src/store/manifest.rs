//! `_manifest.json`: what a dataset holds and where it came from, sealed by a checksum over its JSON.

use std::path::Path;

use arrow_schema::Schema;

use super::{LabelForm, Shard, FORMAT, MANIFEST, OLDEST_MAJOR, SCHEMA_MAJOR, SCHEMA_VERSION};
use crate::data::{ElementType, SourceInfo};
use crate::error::{Error, Result};
use crate::util::{read_text_bounded, Links};

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
    /// The element type the model's input declares, when it differs from the stored input's
    /// (`input.dtype`; schema 1.3): a student exported from these labels takes this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_type: Option<crate::data::ElementType>,
    /// The output read as logits.
    pub output_name: String,
    /// What that output held (probabilities are stored as log p).
    #[serde(default = "logits_kind")]
    pub output_kind: crate::teacher::OutputKind,
    /// Outputs made elsewhere and imported (`softlabel import`; schema 1.4): then `file` and `sha256`
    /// are the outputs file's, and the input fields are empty (no model was run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportInfo>,
    /// The teacher's further inputs, fed from other data columns (`--input NAME=COLUMN`; schema 1.5).
    /// Not stored in the parts: the fingerprint covers the data they were read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_inputs: Vec<ExtraInputInfo>,
}

/// A teacher's intermediate value stored as a column (`precompute --features`, schema 2.9).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureInfo {
    /// The value's name in the model.
    pub name: String,
    /// The column holding it: `feature.` and the name.
    pub column: String,
    /// A row's shape as the model computes it.
    pub shape: Vec<usize>,
    /// How a map of more than one dimension a row was reduced.
    pub pool: crate::teacher::FeaturePool,
    /// The seed of the random projection, when one was applied (`--feature-dim`): the rule is in
    /// SCHEMA.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_seed: Option<u64>,
    /// Values stored per row.
    pub width: usize,
}

/// A further teacher input and the data column that fed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInputInfo {
    /// The model's input name.
    pub name: String,
    /// The data column it was fed from.
    pub column: String,
    /// The element type of that column.
    pub dtype: ElementType,
    /// Values per row in that column.
    pub width: usize,
    /// The element type the model's input declares.
    pub input_type: ElementType,
    /// The shape the model's input declares (-1: dynamic).
    pub input_shape: Vec<i64>,
}

/// Where imported teacher outputs came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportInfo {
    /// The outputs file's format: jsonl, parquet, npy, npz or csv.
    pub format: String,
    /// The column or JSONL key the values were read from.
    pub column: String,
    /// Rows of outputs in the file (the data's rows each had one; others were not used).
    pub rows: u64,
    /// The teacher's name, as the user gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_name: Option<String>,
    /// An identifier of the exact teacher (version, hash, API model id), as the user gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_id: Option<String>,
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
    /// How the rows were made from an image folder (schema 1.6): resize, crop, channels, layout,
    /// normalisation. Training and evaluation read the same folder the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::data::images::ImagePrep>,
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
    /// Top-k labels: the `label_logit` column holds each labelled row's teacher logit of its label
    /// (schema 2.11), for losses that need the target class's logit outside the top k (DKD).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_logit: bool,
    /// For a teacher ensemble: its members (`teacher` then describes the ensemble as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleInfo>,
    /// Augmented views (`precompute --views`): every source row stored `count` times, shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<crate::augment::Views>,
    /// The teacher's intermediate values stored as `feature.NAME` columns (schema 2.9).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureInfo>,
    /// A sequence teacher's dataset (schema 2.12): one row per (id, unmasked position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<super::Sequence>,
    /// Which shard of the source this dataset holds (`--shard I/N`); absent for a whole dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// sha256 of this manifest's compact JSON with `checksum` set to "": any edit by hand shows.
    #[serde(default)]
    pub checksum: String,
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

    /// The Parquet key-value metadata every part carries from its start (the manifest's fields, minus the
    /// parts list and the source, which [`Manifest::source_key_value`] adds when the part closes).
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
        if !self.features.is_empty() {
            kv.push(("softlabel.features".into(), json(&self.features)));
        }
        if let Some(seq) = &self.sequence {
            kv.push(("softlabel.sequence".into(), json(seq)));
        }
        kv
    }

    /// `softlabel.source`, the source's identity: a part's footer gets it last, when the part closes
    /// (precompute hashes the source while the first rows are scored), after [`Manifest::key_values`].
    pub fn source_key_value(&self) -> (String, String) {
        ("softlabel.source".into(), erased::Json::to_json(&self.source))
    }

    /// The Arrow schema of every part, carrying [`Manifest::key_values`] and the source as its metadata
    /// (so readers that look at the embedded Arrow schema, like pyarrow's `schema.metadata`, see them
    /// too). Embedded when the part closes, with the source.
    pub fn arrow_schema(&self) -> Schema {
        let kv = self.key_values().into_iter().chain([self.source_key_value()]);
        self.part_schema().with_metadata(kv.collect::<std::collections::HashMap<_, _>>())
    }

    /// The columns every part has, without the metadata (see [`Manifest::arrow_schema`]).
    pub fn part_schema(&self) -> Schema {
        use super::columns;
        use arrow_schema::{DataType, Field};
        let float = if self.float16 { DataType::Float16 } else { DataType::Float32 };
        let list = |dt: DataType, n: usize| {
            DataType::FixedSizeList(std::sync::Arc::new(Field::new("item", dt, false)), n as i32)
        };
        let mut fields =
            vec![Field::new(columns::ID, self.id_type(), false), Field::new(columns::LABEL, DataType::Int64, true)];
        if self.has_paths() {
            fields.push(Field::new(columns::PATH, DataType::Utf8, false));
        }
        if self.sequence.is_some() {
            fields.push(Field::new(columns::POSITION, DataType::UInt32, false));
        }
        match &self.views {
            Some(v) if v.crop.is_some() => fields.extend([
                Field::new(columns::VIEW, DataType::UInt16, false),
                Field::new(columns::CROP_X, DataType::UInt32, false),
                Field::new(columns::CROP_Y, DataType::UInt32, false),
                Field::new(columns::CROP_W, DataType::UInt32, false),
                Field::new(columns::CROP_H, DataType::UInt32, false),
                Field::new(columns::FLIP, DataType::Boolean, false),
            ]),
            Some(_) => fields.extend([
                Field::new(columns::VIEW, DataType::UInt16, false),
                Field::new(columns::SHIFT_X, DataType::Int16, false),
                Field::new(columns::SHIFT_Y, DataType::Int16, false),
            ]),
            None => {}
        }
        if self.input.stored {
            fields.push(Field::new(columns::INPUT, list(self.input.dtype.to_arrow(), self.input.width), false));
        }
        let k = self.num_classes;
        match self.form {
            LabelForm::Dense => fields.extend([
                Field::new(columns::LOGITS, list(float.clone(), k), false),
                Field::new(columns::SOFT, list(float.clone(), k), false),
            ]),
            LabelForm::TopK { k: top } => fields.extend([
                Field::new(columns::TOPK_INDEX, list(self.index_type(), top), false),
                Field::new(columns::TOPK_LOGIT, list(float.clone(), top), false),
                Field::new(columns::LOGSUMEXP_T, DataType::Float64, false),
            ]),
            LabelForm::Sampled { k: draws, .. } => {
                fields.push(Field::new(columns::SAMPLE_INDEX, list(self.index_type(), draws), false))
            }
        }
        // After the forms' columns, so a dataset without it keeps its column order.
        if let (LabelForm::TopK { .. }, true) = (self.form, self.label_logit) {
            fields.push(Field::new(columns::LABEL_LOGIT, float.clone(), true));
        }
        for f in &self.features {
            fields.push(Field::new(f.column.as_str(), list(float.clone(), f.width), false));
        }
        Schema::new(fields)
    }

    /// The element type of class indices (`topk_index`, `sample_index`): the narrowest that holds K in
    /// sequence datasets (uint16 up to 65,536 classes: a vocabulary's top-k is most of their bytes),
    /// uint32 in every other dataset.
    pub fn index_type(&self) -> arrow_schema::DataType {
        if self.sequence.is_some() && self.num_classes <= 1 << 16 {
            arrow_schema::DataType::UInt16
        } else {
            arrow_schema::DataType::UInt32
        }
    }

    /// The `id` column's type: int64 from schema 2 on, uint64 in 1.x.
    pub fn id_type(&self) -> arrow_schema::DataType {
        if self.schema_version.starts_with("1.") {
            arrow_schema::DataType::UInt64
        } else {
            arrow_schema::DataType::Int64
        }
    }

    /// Whether parts hold the `path` column: rows read from an image folder (schema 1.6).
    pub fn has_paths(&self) -> bool {
        self.input.image.is_some()
    }

    /// Reads and checks `DIR/_manifest.json` (a regular file, not a link, at most [`MAX_MANIFEST_BYTES`]).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let remote = crate::util::is_url(dir);
        if !remote && dir.is_file() {
            return Err(Error::dataset(
                dir,
                "is a file, not a soft-label dataset folder; if it is raw data, make soft labels from it first: \
                 `softlabel precompute --teacher T.onnx --data FILE --temperature T --out DIR`, then pass DIR",
            ));
        }
        if !remote && !dir.is_dir() {
            return Err(Error::dataset(dir, "no such soft-label dataset folder"));
        }
        let text = read_text_bounded(&path, Links::Refuse, MAX_MANIFEST_BYTES, "a manifest").map_err(|e| match e {
            Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => Error::dataset(
                &path,
                if remote {
                    "missing: no soft-label dataset at this URL, or not a complete one (an interrupted precompute \
                     leaves no manifest)"
                } else {
                    "missing: the folder is not a complete soft-label dataset (an interrupted precompute leaves no \
                     manifest)"
                },
            ),
            e => e,
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
            Some(m) if (OLDEST_MAJOR..=SCHEMA_MAJOR).contains(&m) => {}
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

    /// The field checks of [`Manifest::parse`] (for a manifest read without a checksum: the journal's).
    pub(crate) fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::dataset(path, msg));
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("temperature {} is not finite and > 0", self.temperature));
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return bad(format!("num_classes {} is not in 1..={MAX_CLASSES}", self.num_classes));
        }
        match self.form {
            LabelForm::TopK { k } if k == 0 || k > self.num_classes => {
                return bad(format!("top-k {k} is not in 1..={}", self.num_classes))
            }
            LabelForm::Sampled { k, .. } if k == 0 || k > MAX_SAMPLE_K => {
                return bad(format!("sample k {k} is not in 1..={MAX_SAMPLE_K}"))
            }
            _ => {}
        }
        if let Some(names) = &self.class_names {
            if names.len() != self.num_classes {
                return bad(format!("{} class names for {} classes", names.len(), self.num_classes));
            }
        }
        if let Some(v) = &self.views {
            v.validate(self.input.width).map_err(|e| {
                let e = match e {
                    Error::Config(m) => m,
                    e => e.to_string(),
                };
                Error::dataset(path, format!("views: {e}"))
            })?;
        }
        if let Some(seq) = &self.sequence {
            seq.validate(self.input.width).map_err(|e| Error::dataset(path, format!("sequence: {e}")))?;
            if self.views.is_some() || !self.features.is_empty() {
                return bad("sequence datasets have neither views nor features".into());
            }
        }
        let values = self.input.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if values != Some(self.input.width) {
            return bad(format!("input shape {:?} does not hold {} values", self.input.shape, self.input.width));
        }
        if self.input.width > MAX_INPUT_VALUES {
            return bad(format!("input width {} is over {MAX_INPUT_VALUES} values", self.input.width));
        }
        let total = self.parts.iter().try_fold(0u64, |a, p| a.checked_add(p.rows));
        match total {
            Some(t) if t == self.rows => {}
            Some(t) => return bad(format!("parts hold {t} rows, manifest says {}", self.rows)),
            None => return bad("the parts' row counts overflow 64 bits".into()),
        }
        if self.labeled_rows > self.rows {
            return bad(format!("labeled_rows {} is more than rows {}", self.labeled_rows, self.rows));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.parts {
            if !is_part_name(&p.file) {
                return bad(format!("part name '{}' is not a part-NNNNN.parquet file name", p.file));
            }
            if !names.insert(p.file.as_str()) {
                return bad(format!("part '{}' is listed twice", p.file));
            }
            if p.min_id > p.max_id && p.rows > 0 {
                return bad(format!("part '{}': min_id {} is above max_id {}", p.file, p.min_id, p.max_id));
            }
        }
        if let Some(s) = &self.shard {
            if s.count == 0 || s.index >= s.count {
                return bad(format!("shard {}/{} is not I/N with I < N", s.index, s.count));
            }
        }
        Ok(())
    }
}

/// The largest `_manifest.json` read (a real one is kilobytes; 100,000 parts or class names fit).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// The most classes a dataset may have (the largest vocabularies in use are ~256k).
pub const MAX_CLASSES: usize = 1 << 24;
/// The most draws per row of a sampled dataset.
pub const MAX_SAMPLE_K: usize = 1 << 16;
/// The most input values per row (a 3 x 4096 x 4096 image is 50M).
pub const MAX_INPUT_VALUES: usize = 1 << 26;

/// Whether `name` is a part file name as the writer makes them: `part-` digits `.parquet`, nothing else
/// (so a manifest can only name files inside its own folder).
pub fn is_part_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
        .is_some_and(|d| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit()))
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
                input_type: None,
                output_name: "y".into(),
                output_kind: crate::teacher::OutputKind::Logits,
                imported: None,
                extra_inputs: Vec::new(),
            },
            input: InputInfo {
                source_column: "input".into(),
                dtype: ElementType::F32,
                width: 2,
                shape: vec![2],
                stored: true,
                image: None,
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
            label_logit: false,
            ensemble: None,
            views: None,
            sequence: None,
            features: Vec::new(),
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
