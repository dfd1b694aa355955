//! The teacher: ONNX models run by ONNX Runtime ([`session`]), several of them combined ([`ensemble`]),
//! and finding the ONNX Runtime shared library ([`runtime`]).

pub mod ensemble;
pub mod graph;
pub mod imported;
mod logits;
pub mod runtime;
pub mod session;

use std::path::PathBuf;

pub use ensemble::{ensemble_sha256, Combine, Ensemble};
pub use imported::{ImportSource, Imported};
pub use logits::Logits;
pub use runtime::{environment, find_ort_library, loaded_library};
pub use session::{session_builder, Teacher};

/// Settings for loading a teacher.
#[derive(Debug, Clone, Default)]
pub struct TeacherOptions {
    /// ONNX Runtime intra-op threads (0: ONNX Runtime's default).
    pub threads: usize,
    /// Explicit ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
    /// The input to feed the data's input to, for models with several (default: the only one).
    pub input_name: Option<String>,
    /// Further inputs, fed from [`crate::data::DataSpec::extra_inputs`] in the same order.
    pub extra_inputs: Vec<String>,
    /// The output to read, for models with several (default: the first).
    pub output_name: Option<String>,
    /// What the output holds (default: detected on the first batch).
    pub output_kind: OutputKind,
    /// Intermediate values to return beside the logits (`precompute --features`), by name.
    pub features: Vec<String>,
    /// How a feature map of more than one dimension a row is reduced.
    pub feature_pool: FeaturePool,
    /// Project each feature to this many values (a seeded Gaussian random projection).
    pub feature_dim: Option<usize>,
    /// Seed of the projections.
    pub feature_seed: u64,
    /// A sequence teacher's padding token: fed as 0 in [`TeacherOptions::mask_input`].
    pub pad_id: Option<i64>,
    /// A sequence teacher's attention-mask input, fed `token != pad_id` (1 or 0) from the data's input.
    pub mask_input: Option<String>,
}

/// How a feature of shape `[C, d1, d2, ...]` a row (a conv map) is stored: averaged or maximised over
/// `d1, d2, ...` to `[C]`, whole (flattened), or as its attention map (the mean over `C` of the squares,
/// `[d1 x d2 x ...]`). Features of one dimension a row are stored as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePool {
    /// Global average pooling.
    #[default]
    Avg,
    /// Global max pooling.
    Max,
    /// No pooling: the whole map, flattened row-major.
    None,
    /// The spatial attention map of Zagoruyko and Komodakis 2017 (p = 2): per position, the mean over
    /// channels of the squared values (unnormalised), row-major.
    Attention,
}

/// What a teacher's output holds. softlabel stores logits; probabilities p become log p, and
/// log-probabilities are logits already (both give back p under softmax). log 0 = -inf is kept: it
/// softmaxes to exactly 0 and never turns into NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// Detect on the first batch: rows of non-negative values summing to 1 are probabilities; rows of
    /// non-positive values whose exponentials sum to 1 are log-probabilities; anything else logits.
    #[default]
    Auto,
    /// Raw scores (softmax not applied).
    Logits,
    /// Probabilities (softmax applied).
    Probs,
    /// Log-probabilities (log-softmax applied).
    LogProbs,
    /// The top k log-probabilities of each row, by class, normalised over all K classes (as vLLM and
    /// OpenAI-style APIs return them): imported outputs only, stored in the top-k form at T = 1.
    TopkLogProbs,
}

impl OutputKind {
    /// What `rows` (row-major, `k` per row) look like, for [`OutputKind::Auto`].
    pub fn detect(values: &[f32], k: usize) -> OutputKind {
        let rows = || values.chunks_exact(k.max(1));
        let sums_to_one = |s: f64| (s - 1.0).abs() < 1e-3;
        if values.is_empty() {
            OutputKind::Logits
        } else if rows().all(|r| r.iter().all(|&v| v >= 0.0) && sums_to_one(r.iter().map(|&v| f64::from(v)).sum())) {
            OutputKind::Probs
        } else if rows()
            .all(|r| r.iter().all(|&v| v <= 0.0) && sums_to_one(r.iter().map(|&v| f64::from(v).exp()).sum()))
        {
            OutputKind::LogProbs
        } else {
            OutputKind::Logits
        }
    }

    /// Converts `values` of this kind to logits in place.
    pub fn to_logits(self, values: &mut [f32]) {
        if self == OutputKind::Probs {
            values.iter_mut().for_each(|v| *v = v.ln());
        }
    }
}
