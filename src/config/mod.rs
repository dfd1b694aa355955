//! Settings, one path per stage: a serde type whose `Default` is the only home of the defaults
//! ([`TrainConfig`], [`TeacherConfig`], [`DataConfig`]); command-line flags and pipeline keys are both
//! overrides of it; `validate` turns it, once, into the settings the stage runs with
//! ([`TrainSettings`], [`crate::precompute::PrecomputeSettings`]), naming a bad value the way the user
//! wrote it ([`Origin`]): `--alpha` on the command line, `p.toml: [student] alpha` in a pipeline.

pub mod data;
pub mod pipeline;
pub mod teacher;
pub mod train;

use std::path::PathBuf;

pub use data::DataConfig;
pub use pipeline::{Pipeline, PipelineOverrides};
pub use teacher::TeacherConfig;
pub use train::{Keep, OptimizerKind, StudentKind, TrainConfig, TrainSettings};

use crate::error::Error;

/// Limits on sizes a setting can ask for, checked before anything is allocated (a pipeline file may come
/// from someone else). Each is far beyond real use.
pub mod limits {
    /// Threads (training workers, ONNX Runtime intra-op threads).
    pub const THREADS: usize = 1024;
    /// Training epochs.
    pub const EPOCHS: usize = 1_000_000;
    /// Rows per batch (training or teacher).
    pub const BATCH_ROWS: usize = 1 << 20;
    /// Units of one hidden layer.
    pub const HIDDEN_UNITS: usize = 1 << 20;
    /// Hidden layers.
    pub const HIDDEN_LAYERS: usize = 64;
    /// Augmented views per source row.
    pub const VIEWS: usize = 1024;
    /// Rows one teacher call sees (batch size times views).
    pub const TEACHER_CALL_ROWS: usize = 1 << 22;
    /// Convolution blocks of a cnn student (each halves the image).
    pub const CONV_BLOCKS: usize = 16;
    /// Channels of one convolution block.
    pub const CONV_CHANNELS: usize = 1 << 14;
    /// Values per embedding.
    pub const EMBED_DIM: usize = 1 << 14;
    /// Rows of an embedding table: ids are stored as float32, exact up to 2^24.
    pub const EMBED_VOCAB: usize = 1 << 24;
}

/// Refuses `value` of `field` over `limit`.
pub(crate) fn check_limit(origin: &Origin, field: &str, value: usize, limit: usize) -> crate::error::Result<()> {
    if value > limit {
        return Err(origin.error(field, format!("is {value}; at most {limit}")));
    }
    Ok(())
}

/// Proof that settings went through `validate`: a field the library's settings types carry privately,
/// so code outside the crate cannot build (or change) them without validation. Settings read back from a
/// file softlabel wrote (`student.json`, a checkpoint) count as validated when they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validated(());

/// Where a group of settings came from, so an error names a setting as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Command-line flags: `--batch-size`.
    Flags,
    /// A section of a pipeline file: `p.toml: [student] batch_size`.
    File {
        /// The pipeline file.
        path: PathBuf,
        /// The section, without brackets.
        section: &'static str,
    },
}

impl Origin {
    /// The setting `field` (a config field name) as the user wrote it: `--batch-size`, `[student] batch_size`.
    pub fn name(&self, field: &str) -> String {
        match self {
            Origin::Flags => format!("--{}", flag_name(field)),
            Origin::File { section, .. } => format!("[{section}] {field}"),
        }
    }

    /// A configuration error about `field`: "`name` `message`" (after the file, for a pipeline).
    pub fn error(&self, field: &str, message: impl std::fmt::Display) -> Error {
        self.error_about(format!("{} {message}", self.name(field)))
    }

    /// A configuration error whose message names its settings itself (with [`Origin::name`]).
    pub fn error_about(&self, message: impl std::fmt::Display) -> Error {
        match self {
            Origin::Flags => Error::Config(message.to_string()),
            Origin::File { path, .. } => Error::Config(format!("{}: {message}", path.display())),
        }
    }
}

/// The command-line flag of a config field, where the two names differ.
fn flag_name(field: &str) -> String {
    match field {
        "memory_budget_mib" => "memory-budget".into(),
        "model" => "teacher".into(),
        "output" => "teacher-output".into(),
        "inputs" => "input".into(),
        "input_column" | "label_column" | "id_column" => field.replace('_', "-"),
        other => other.replace('_', "-"),
    }
}

/// Checks a temperature: finite and > 0.
pub fn check_temperature(t: f32, origin: &Origin, field: &str) -> crate::Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(origin.error(field, format!("must be finite and > 0, got {t}")))
    }
}
