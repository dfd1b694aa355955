//! The integration tests: one binary (as ripgrep and uv do), one module per area; the hostile-input test
//! has its own (tests/hostile/main.rs says why). They run the real
//! `softlabel` binary (`CARGO_BIN_EXE_softlabel`) against real ONNX Runtime and real Parquet files.
//!
//! Fixtures (small ONNX models built with the `onnx` package, Parquet files written by pyarrow) come
//! from tests/fixtures/make_models.py; `make test` generates them and sets SOFTLABEL_FIXTURES.
#![allow(dead_code)]

mod bad_inputs;
mod cli;
mod common;
mod daily;
mod formats;
mod fuzz_regressions;
mod multi_input;
mod pipelines;
mod students;
