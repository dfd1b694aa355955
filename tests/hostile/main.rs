//! The hostile-input test, in a binary of its own. It measures each child's peak memory with `wait4`,
//! and a child started by vfork + exec starts its `ru_maxrss` at its parent's high-water mark: in the
//! shared `it` binary, tests running beside it (ONNX Runtime sessions in process, up to 240 MB each)
//! pushed that mark over the cap, and every case failed at "peak memory 407 MiB" (seen in CI). Alone,
//! this process stays near 17 MB, so what a case measures is the child's own memory.
#![allow(dead_code)]

#[path = "../it/common.rs"]
mod common;
mod hostile;
