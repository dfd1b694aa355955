//! Any bytes as a csv input: see input_common.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "input_common.rs"]
mod input_common;

fuzz_target!(|data: &[u8]| input_common::fuzz_input(data, "csv"));
