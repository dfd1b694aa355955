//! The soft-label dataset: a folder with `_manifest.json` and `part-NNNNN.parquet` files.
//! SCHEMA.md is the contract; this module is its implementation.

mod decode;
mod features;
mod filter;
mod manifest;
mod pages;
mod reader;
pub mod remote;
mod rows;
pub mod sequence;
mod writer;

pub(crate) use features::float_list;
pub use features::FeatureTable;
pub use filter::{Holdout, RowFilter, Side};
pub use manifest::{
    is_part_name, EnsembleInfo, ExtraInputInfo, FeatureInfo, ImportInfo, InputInfo, Manifest, PartInfo, TeacherInfo,
    MAX_CLASSES, MAX_INPUT_VALUES, MAX_MANIFEST_BYTES, MAX_SAMPLE_K,
};
pub use reader::{Block, SoftLabels, Windows};
pub use rows::{Outputs, TeacherOutputs};
pub use sequence::{Sequence, Targets};
pub(crate) use writer::{is_dataset_file, prepare_dir, WRITE_BLOCK};
pub use writer::{Publish, Resumed, ScoredRows, SoftLabelWriter, WriterOptions};

use arrow_schema::DataType;

use crate::error::{Error, Result};

/// The schema version this build writes for datasets of no optional feature. Major version 2 stores ids
/// as int64 (every reader's default integer, Spark's included); 1.x stored them as uint64 and is still
/// read. A minor version names the newest optional feature a dataset uses, the same in 1.x and 2.x.
pub const SCHEMA_VERSION: &str = "2.0";
/// The schema version of sparse (top-k or sampled) datasets, which add columns and the `form` field.
pub const SCHEMA_VERSION_SPARSE: &str = "2.1";
/// The schema version of datasets with augmented views (`precompute --views`), which add the `view`,
/// `shift_x` and `shift_y` columns and the `views` field.
pub const SCHEMA_VERSION_VIEWS: &str = "2.2";
/// The schema version of datasets whose teacher takes another element type than the stored input
/// (`teacher.input_type`, e.g. a float32 teacher fed uint8 pixels).
pub const SCHEMA_VERSION_INPUT_TYPE: &str = "2.3";
/// The schema version of datasets made from imported teacher outputs (`softlabel import`,
/// `teacher.imported`).
pub const SCHEMA_VERSION_IMPORT: &str = "2.4";
/// The schema version of datasets whose teacher was fed several inputs (`teacher.extra_inputs`).
pub const SCHEMA_VERSION_MULTI_INPUT: &str = "2.5";
/// The schema version of datasets made from an image folder, whose manifest records how images became
/// rows (`input.image`).
pub const SCHEMA_VERSION_IMAGES: &str = "2.6";
/// The schema version of datasets imported from top-k log-probabilities (`teacher.output_kind` =
/// `topk-log-probs`).
pub const SCHEMA_VERSION_TOPK_IMPORT: &str = "2.7";
/// The schema version of datasets with crop views of images (`views.crop`; the `crop_x`, `crop_y`,
/// `crop_w`, `crop_h` and `flip` columns instead of `shift_x` and `shift_y`).
pub const SCHEMA_VERSION_CROP_VIEWS: &str = "2.8";
/// The schema version of datasets storing the teacher's intermediate values (`features`, the
/// `feature.NAME` columns).
pub const SCHEMA_VERSION_FEATURES: &str = "2.9";
/// Teacher features stored as attention maps (`--feature-pool attention`).
pub const SCHEMA_VERSION_ATTENTION: &str = "2.10";
/// Top-k datasets storing each labelled row's logit of its label (`label_logit`).
pub const SCHEMA_VERSION_LABEL_LOGIT: &str = "2.11";
/// Sequence datasets: one row per (id, unmasked position) of a teacher with outputs of rank 3
/// (`sequence`, the `position` column; top-k indices as uint16 when the classes fit).
pub const SCHEMA_VERSION_SEQUENCE: &str = "2.12";
/// The major schema version this build writes (and reads).
pub const SCHEMA_MAJOR: u32 = 2;
/// The oldest major schema version this build reads (1.x: uint64 ids).
pub const OLDEST_MAJOR: u32 = 1;
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
    /// Top-k: the teacher's raw logit of the row's label (float32 or float16, null without a label).
    pub const LABEL_LOGIT: &str = "label_logit";
    /// Sequences: the row's position in its source row (uint32; masked positions are not stored).
    pub const POSITION: &str = "position";
    /// Views: the view number (uint16; 0 is the source row as it is).
    pub const VIEW: &str = "view";
    /// Views: horizontal shift in pixels (int16; positive moves the content right).
    pub const SHIFT_X: &str = "shift_x";
    /// Views: vertical shift in pixels (int16; positive moves the content down).
    pub const SHIFT_Y: &str = "shift_y";
    /// Crop views: the crop's left column in the source image (uint32; 0 with the rest for view 0).
    pub const CROP_X: &str = "crop_x";
    /// Crop views: the crop's top row.
    pub const CROP_Y: &str = "crop_y";
    /// Crop views: the crop's width (0: view 0, the prepared image).
    pub const CROP_W: &str = "crop_w";
    /// Crop views: the crop's height.
    pub const CROP_H: &str = "crop_h";
    /// Crop views: flipped left-right after the crop (bool).
    pub const FLIP: &str = "flip";
    /// Sampled: the k classes drawn from softmax(logits / T), ascending (`fixed_size_list<uint32>[k]`).
    pub const SAMPLE_INDEX: &str = "sample_index";
    /// Each row's file relative to the data folder (image folders; never decoded by softlabel's
    /// readers, so not in [`ALL`]).
    pub const PATH: &str = "path";
    /// The columns softlabel's readers decode.
    pub const ALL: [&str; 19] = [
        ID,
        LABEL,
        POSITION,
        VIEW,
        SHIFT_X,
        SHIFT_Y,
        CROP_X,
        CROP_Y,
        CROP_W,
        CROP_H,
        FLIP,
        INPUT,
        LOGITS,
        SOFT,
        TOPK_INDEX,
        TOPK_LOGIT,
        LOGSUMEXP_T,
        LABEL_LOGIT,
        SAMPLE_INDEX,
    ];
}

/// Values per row of a part column: a fixed-size list's width, else 1.
pub(crate) fn list_width(dt: &DataType) -> usize {
    match dt {
        DataType::FixedSizeList(_, n) => (*n).max(0) as usize,
        _ => 1,
    }
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

    /// As the flags say it: "dense", "top-k 5", "sampled 10 (seed 0)".
    pub fn name(&self) -> String {
        match self {
            LabelForm::Dense => "dense".into(),
            LabelForm::TopK { k } => format!("top-k {k}"),
            LabelForm::Sampled { k, seed } => format!("sampled {k} (seed {seed})"),
        }
    }
}
