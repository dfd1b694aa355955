//! # softlabel
//!
//! Offline knowledge distillation in two stages, so the teacher is never in memory while a student trains.
//!
//! 1. [`precompute`] runs an ONNX teacher through ONNX Runtime ([`teacher`]) over an input dataset
//!    ([`data`]) and writes a soft-label dataset ([`store`]): Parquet parts keyed by row id with hard
//!    labels, inputs, raw logits and `softmax(logits / T)` ([`soften`]), described by `_manifest.json`.
//! 2. [`train`] trains a pure-ndarray [`student`] from those files with a batch-level loss ([`distill`]:
//!    Hinton et al. 2015), data-parallel over rayon; [`eval`] measures it against labels and teacher.
//!
//! Settings for both come from [`config`]; [`pipeline`] runs both from a TOML file. The library never
//! prints: long work reports through [`progress::Progress`], logs go through `tracing`, and every failure
//! is an [`Error`] naming the file, column and row concerned. ARCHITECTURE.md has the module tree.
#![deny(missing_docs)]

pub mod augment;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod export;
pub mod merge;
pub mod optim;
pub mod pipeline;
pub mod precompute;
pub mod progress;
pub mod report;
pub mod soften;
pub mod store;
pub mod student;
pub mod sweep;
pub mod teacher;
pub mod train;
pub mod util;
pub mod verify;

pub use error::{Error, Result};
