//! `precompute` settings: [`TeacherConfig`] (flags and a pipeline's `[teacher]` keys, defaults in its
//! `Default`) and the validated [`PrecomputeSettings`] a teacher pass runs with.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{check_limit, check_temperature, limits, Origin, Validated};
use crate::augment::{parse_image, ViewOptions};
use crate::data::DataSpec;
use crate::error::Result;
use crate::store::{LabelForm, Shard, WriterOptions};
use crate::teacher::{Combine, OutputKind, TeacherOptions};

/// One model or several (an ensemble).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Models {
    /// One teacher.
    One(PathBuf),
    /// An ensemble.
    Many(Vec<PathBuf>),
    /// No model: outputs made elsewhere (`softlabel import`; not in pipeline files).
    #[serde(skip)]
    Imported(crate::teacher::ImportSource),
}

impl Models {
    /// The paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Models::One(p) => vec![p.clone()],
            Models::Many(p) => p.clone(),
            Models::Imported(_) => Vec::new(),
        }
    }

    /// The paths, to resolve them in place.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Models::One(p) => vec![p],
            Models::Many(p) => p.iter_mut().collect(),
            Models::Imported(src) => vec![&mut src.outputs],
        }
    }
}

/// The teacher pass as the user writes it (`precompute` flags, a pipeline's `[teacher]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct TeacherConfig {
    /// The ONNX model, or a list of models forming an ensemble.
    pub model: Models,
    /// How an ensemble's outputs are combined.
    pub combine: Combine,
    /// What the teacher outputs (default: detected on the first batch).
    pub output: OutputKind,
    /// The input to feed, for models with several.
    pub input_name: Option<String>,
    /// Every input of a teacher with several, mapped to a data column (`--input NAME=COLUMN`, a
    /// pipeline's `inputs = { input_ids = "ids", attention_mask = "mask" }`). The data's input column
    /// (stored, and what the student learns from) is one of them; the others are fed in the order given.
    #[serde(with = "input_map")]
    pub inputs: Vec<InputMap>,
    /// The output to read, for models with several (default: the first).
    pub output_name: Option<String>,
    /// Temperature of the stored soft labels (required).
    pub temperature: Option<f32>,
    /// Rows per inference call.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    pub threads: usize,
    /// Class names, in output order.
    pub class_names: Option<Vec<String>>,
    /// Rows per part file.
    pub rows_per_part: usize,
    /// Store only the K largest classes per row (and the exact normaliser).
    pub top_k: Option<usize>,
    /// Store K classes per row drawn from softmax(logits / T).
    pub sample_k: Option<usize>,
    /// Seed of the sampled draws.
    pub sample_seed: u64,
    /// Store logits and probabilities as float16.
    pub float16: bool,
    /// Leave the input column out (a label-only dataset; training joins the source by id).
    pub no_inputs: bool,
    /// Views per row (1: each row once, as it is); in a pipeline only the training split gets views.
    pub views: u16,
    /// Largest shift of a view, in pixels.
    pub max_shift: u16,
    /// The input's image layout, "HxW" or "CxHxW" (default: from the teacher's input shape).
    pub image: Option<String>,
    /// Seed of the views' shifts or crops.
    pub view_seed: u64,
    /// Crop views of image data (FKD): each view a random resized crop whose area is this fraction
    /// range of the image's, instead of a shift.
    pub crop_scale: Option<[f32; 2]>,
    /// Crop views are flipped left-right with probability 1/2.
    pub flip: bool,
    /// Intermediate values of the teacher stored beside its outputs (`feature.NAME` columns).
    pub features: Vec<String>,
    /// How feature maps are reduced: avg, max or none.
    pub feature_pool: crate::teacher::FeaturePool,
    /// Project every feature to this many values.
    pub feature_dim: Option<usize>,
    /// Seed of the feature projections.
    pub feature_seed: u64,
    /// A sequence teacher's alignment: `same` (a tagger) or `next` (a language model); default `same`.
    pub targets: Option<crate::store::Targets>,
    /// A sequence teacher's padding token id: those positions are masked (not stored).
    pub pad_id: Option<i64>,
    /// A sequence teacher's attention-mask input, fed 1 where a token is and 0 at padding.
    pub mask_input: Option<String>,
    /// The tokenizer or vocabulary file the token ids come from: its sha256 is recorded.
    pub vocab_file: Option<PathBuf>,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        let writer = WriterOptions::default();
        TeacherConfig {
            model: Models::Many(Vec::new()),
            combine: Combine::default(),
            output: OutputKind::default(),
            input_name: None,
            inputs: Vec::new(),
            output_name: None,
            temperature: None,
            batch_size: 256,
            threads: 0,
            class_names: None,
            rows_per_part: writer.rows_per_part,
            top_k: None,
            sample_k: None,
            sample_seed: 0,
            float16: false,
            no_inputs: false,
            views: 1,
            max_shift: 2,
            image: None,
            view_seed: 0,
            crop_scale: None,
            flip: false,
            features: Vec::new(),
            feature_pool: crate::teacher::FeaturePool::default(),
            feature_dim: None,
            feature_seed: 0,
            targets: None,
            pad_id: None,
            mask_input: None,
            vocab_file: None,
        }
    }
}

/// One teacher input fed from one data column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMap {
    /// The model's input name.
    pub name: String,
    /// The data column.
    pub column: String,
}

impl std::str::FromStr for InputMap {
    type Err = String;

    /// `NAME=COLUMN`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.split_once('=') {
            Some((name, column)) if !name.is_empty() && !column.is_empty() => {
                Ok(InputMap { name: name.to_string(), column: column.to_string() })
            }
            _ => Err(format!("'{text}' is not NAME=COLUMN (a teacher input name, '=', a data column)")),
        }
    }
}

/// `inputs` as a table (`{ input_ids = "ids", ... }`), in the order the deserializer gives (a TOML
/// table's keys come sorted: nothing depends on their order but the order extra inputs are recorded in).
mod input_map {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use super::InputMap;

    pub fn serialize<S: Serializer>(inputs: &[InputMap], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(inputs.len()))?;
        for i in inputs {
            map.serialize_entry(&i.name, &i.column)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<InputMap>, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Vec<InputMap>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of teacher input name = data column")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((name, column)) = map.next_entry::<String, String>()? {
                    out.push(InputMap { name, column });
                }
                Ok(out)
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// How one teacher pass runs, besides the teacher: what to read, where to write, and how.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Continue an interrupted run in the output folder.
    pub resume: bool,
    /// Replace the softlabel files of a non-empty output folder.
    pub overwrite: bool,
    /// Process only this shard of the rows.
    pub shard: Option<Shard>,
    /// Explicit ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
}

/// Everything `precompute` needs, validated by [`TeacherConfig::validate`] before any model loads
/// (checks that need the teacher, such as `top_k <= K`, run once it is loaded).
#[derive(Debug, Clone)]
pub struct PrecomputeSettings {
    /// The ONNX teacher(s): several form an ensemble (none with `import`).
    pub teachers: Vec<PathBuf>,
    /// Teacher outputs made elsewhere, joined to the data by id instead of running a model.
    pub import: Option<crate::teacher::ImportSource>,
    /// How an ensemble's outputs are combined.
    pub combine: Combine,
    /// A Parquet file or folder.
    pub data: PathBuf,
    /// Which columns hold what.
    pub spec: DataSpec,
    /// Softmax temperature for the `soft` column.
    pub temperature: f32,
    /// Output folder.
    pub out: PathBuf,
    /// Rows per inference call.
    pub batch_size: usize,
    /// ONNX Runtime threads and library.
    pub teacher_options: TeacherOptions,
    /// Class names, when known.
    pub class_names: Option<Vec<String>>,
    /// Part size, compression, overwrite.
    pub writer: WriterOptions,
    /// Continue an interrupted run in `out`.
    pub resume: bool,
    /// Process only this shard of the rows.
    pub shard: Option<Shard>,
    /// How to store the teacher's outputs: dense, top-k or sampled.
    pub form: LabelForm,
    /// Leave the input column out.
    pub no_inputs: bool,
    /// Store logits and probabilities as float16.
    pub float16: bool,
    /// Augmented views of every row; `None`: each row once, as it is.
    pub views: Option<ViewOptions>,
    /// For a sequence teacher (outputs of rank 3): the alignment asked for (`None`: same).
    pub targets: Option<crate::store::Targets>,
    /// The vocabulary file whose sha256 a sequence dataset records.
    pub vocab_file: Option<PathBuf>,
    /// Made by [`TeacherConfig::validate`] (never read: it only keeps other crates from building these).
    #[allow(dead_code)]
    pub(crate) valid: Validated,
}

impl TeacherConfig {
    /// The views asked for, if more than one per row.
    pub fn view_options(&self, origin: &Origin) -> Result<Option<ViewOptions>> {
        if self.views == 0 {
            return Err(origin.error("views", "must be >= 1"));
        }
        if self.views == 1 {
            if self.crop_scale.is_some() || self.flip {
                return Err(origin.error_about(format!(
                    "{} and {} make views: give {} N (N > 1)",
                    origin.name("crop_scale"),
                    origin.name("flip"),
                    origin.name("views")
                )));
            }
            return Ok(None);
        }
        let image =
            self.image.as_deref().map(parse_image).transpose().map_err(|e| origin.error("image", e.to_string()))?;
        let crop = match self.crop_scale {
            Some(scale) => Some(crate::augment::CropViews { scale, flip: self.flip }),
            None if self.flip => return Err(origin.error("flip", "goes with crop views (crop_scale)")),
            None => None,
        };
        Ok(Some(ViewOptions { count: self.views, max_shift: self.max_shift, image, seed: self.view_seed, crop }))
    }

    /// Checks every setting that needs no file; the result reads `data` with `spec` into `out`.
    pub fn validate(
        &self,
        origin: &Origin,
        data: PathBuf,
        spec: DataSpec,
        out: PathBuf,
        pass: &PassOptions,
    ) -> Result<PrecomputeSettings> {
        let teachers = self.model.paths();
        let import = match &self.model {
            Models::Imported(src) => Some(src.clone()),
            _ => None,
        };
        if teachers.is_empty() && import.is_none() {
            return Err(origin.error("model", "lists no model"));
        }
        if import.is_some() && self.views > 1 {
            return Err(origin.error_about(
                "--views needs a teacher to run on every view; imported outputs are one per row".to_string(),
            ));
        }
        let temperature = self.temperature.ok_or_else(|| origin.error("temperature", "is required"))?;
        check_temperature(temperature, origin, "temperature")?;
        if self.batch_size == 0 {
            return Err(origin.error("batch_size", "must be > 0"));
        }
        if self.rows_per_part == 0 {
            return Err(origin.error("rows_per_part", "must be > 0"));
        }
        check_limit(origin, "batch_size", self.batch_size, limits::BATCH_ROWS)?;
        check_limit(origin, "threads", self.threads, limits::THREADS)?;
        check_limit(origin, "views", usize::from(self.views), limits::VIEWS)?;
        if self.batch_size.saturating_mul(usize::from(self.views)) > limits::TEACHER_CALL_ROWS {
            return Err(origin.error_about(format!(
                "{} {} times {} {} is {} rows per teacher call; at most {}",
                origin.name("batch_size"),
                self.batch_size,
                origin.name("views"),
                self.views,
                self.batch_size.saturating_mul(usize::from(self.views)),
                limits::TEACHER_CALL_ROWS
            )));
        }
        if let Some(names) = &self.class_names {
            if names.iter().any(|n| n.is_empty()) {
                return Err(origin.error("class_names", "has an empty name"));
            }
        }
        if pass.resume && pass.overwrite {
            return Err(origin.error_about("--resume and --overwrite exclude each other"));
        }
        let form = match (self.top_k, self.sample_k) {
            (Some(_), Some(_)) => {
                return Err(origin.error_about(format!(
                    "{} and {} exclude each other",
                    origin.name("top_k"),
                    origin.name("sample_k")
                )))
            }
            (Some(k), None) if k > crate::store::MAX_CLASSES => {
                return Err(origin.error("top_k", format!("is {k}; at most {}", crate::store::MAX_CLASSES)))
            }
            (Some(k), None) => LabelForm::TopK { k },
            (None, Some(0)) => return Err(origin.error("sample_k", "must be > 0")),
            (None, Some(k)) if k > crate::store::MAX_SAMPLE_K => {
                return Err(origin.error("sample_k", format!("is {k}; at most {}", crate::store::MAX_SAMPLE_K)))
            }
            (None, Some(k)) => LabelForm::Sampled { k, seed: self.sample_seed },
            (None, None) => LabelForm::Dense,
        };
        let views = self.view_options(origin)?;
        if !self.features.is_empty() {
            if import.is_some() {
                return Err(
                    origin.error("features", "are the teacher's intermediate values; imported outputs have none")
                );
            }
            if teachers.len() > 1 {
                return Err(origin.error("features", "are read from one teacher, not an ensemble"));
            }
            for (i, f) in self.features.iter().enumerate() {
                if f.is_empty() || self.features[..i].contains(f) {
                    return Err(origin.error("features", format!("names '{f}' twice or empty")));
                }
            }
        } else if self.feature_dim.is_some() {
            return Err(origin.error("feature_dim", "projects features: name them with features"));
        }
        let topk_import = matches!(&self.model, Models::Imported(src) if src.kind == OutputKind::TopkLogProbs);
        if self.output == OutputKind::TopkLogProbs && import.is_none() {
            return Err(origin.error("output", "topk-log-probs is for imported outputs (softlabel import --kind)"));
        }
        if topk_import {
            // Only the normaliser at T = 1 is known (0, for log-probabilities normalised over all classes).
            if temperature != 1.0 {
                return Err(origin.error_about(format!(
                    "top-k log-probabilities give exact soft labels at T = 1 only ({} {temperature}): the \
                     normaliser at another T needs every class's log-probability",
                    origin.name("temperature")
                )));
            }
            if !matches!(form, LabelForm::TopK { .. }) {
                return Err(origin.error_about(format!(
                    "top-k log-probabilities are stored in the top-k form: add {} K (K: entries a row)",
                    origin.name("top_k")
                )));
            }
        }
        let mut spec = spec;
        let mut input_name = self.input_name.clone();
        let mut extra_inputs = Vec::new();
        if !self.inputs.is_empty() {
            if import.is_some() {
                return Err(origin.error("inputs", "maps teacher inputs; imported outputs run no teacher"));
            }
            if self.input_name.is_some() {
                return Err(origin.error_about(format!(
                    "{} and {} exclude each other: {} names every input",
                    origin.name("inputs"),
                    origin.name("input_name"),
                    origin.name("inputs")
                )));
            }
            if views.is_some() && self.inputs.len() > 1 {
                return Err(origin.error_about(format!(
                    "{} shifts one image input; a teacher fed several inputs takes no views",
                    origin.name("views")
                )));
            }
            for (i, m) in self.inputs.iter().enumerate() {
                if m.name.is_empty() || m.column.is_empty() {
                    return Err(origin.error("inputs", "needs NAME=COLUMN with both names non-empty"));
                }
                if self.inputs[..i].iter().any(|o| o.name == m.name) {
                    return Err(origin.error("inputs", format!("names teacher input '{}' twice", m.name)));
                }
                if self.inputs[..i].iter().any(|o| o.column == m.column) {
                    return Err(origin.error("inputs", format!("feeds column '{}' to two teacher inputs", m.column)));
                }
            }
            // The data's input (stored, and what the student learns from) is one of the mapped columns.
            let data_input = spec.input.join(",");
            let first = self.inputs.iter().position(|m| m.column == data_input).ok_or_else(|| {
                let mapped: Vec<&str> = self.inputs.iter().map(|m| m.column.as_str()).collect();
                origin.error_about(format!(
                    "the data's input column '{data_input}' is none of the columns {} feeds ({}): name the one \
                     stored and learned from with {}",
                    origin.name("inputs"),
                    mapped.join(", "),
                    match origin {
                        Origin::Flags => "--input-column".to_string(),
                        Origin::File { .. } => "[data] input_column".to_string(),
                    }
                ))
            })?;
            input_name = Some(self.inputs[first].name.clone());
            let rest = self.inputs.iter().enumerate().filter(|&(i, _)| i != first).map(|(_, m)| m);
            spec.extra_inputs = rest.clone().map(|m| m.column.clone()).collect();
            extra_inputs = rest.map(|m| m.name.clone()).collect();
        }
        if self.mask_input.is_some() && self.pad_id.is_none() {
            return Err(origin.error("mask_input", "needs pad_id: the mask marks the tokens that are not padding"));
        }
        let sequence_flags = self.targets.is_some() || self.pad_id.is_some() || self.vocab_file.is_some();
        if sequence_flags && (views.is_some() || !self.features.is_empty() || import.is_some()) {
            return Err(origin.error_about(format!(
                "{}, {} and {} are for sequence teachers, whose datasets take no views, features or imported outputs",
                origin.name("targets"),
                origin.name("pad_id"),
                origin.name("vocab_file")
            )));
        }
        spec.validate()?;
        Ok(PrecomputeSettings {
            teachers,
            import,
            combine: self.combine,
            data,
            spec,
            temperature,
            out,
            batch_size: self.batch_size,
            teacher_options: TeacherOptions {
                threads: self.threads,
                ort_lib: pass.ort_lib.clone(),
                input_name,
                extra_inputs,
                features: self.features.clone(),
                feature_pool: self.feature_pool,
                feature_dim: self.feature_dim,
                feature_seed: self.feature_seed,
                output_name: self.output_name.clone(),
                output_kind: self.output,
                pad_id: self.pad_id,
                mask_input: self.mask_input.clone(),
            },
            class_names: self.class_names.clone(),
            writer: WriterOptions {
                rows_per_part: self.rows_per_part,
                overwrite: pass.overwrite,
                ..Default::default()
            },
            resume: pass.resume,
            shard: pass.shard,
            form,
            no_inputs: self.no_inputs,
            float16: self.float16,
            views,
            targets: self.targets,
            vocab_file: self.vocab_file.clone(),
            valid: Validated(()),
        })
    }
}
