//! Reading an ONNX model's protobuf just far enough to count its parameters.

use std::path::Path;

use crate::error::{Error, Result};
use crate::util::protobuf::{pb_fields, varint, PbValue};

/// Counts the elements of an ONNX model's initializers (reads the protobuf directly), leaving out int64
/// and bool tensors: shapes, axes and index constants, not weights.
pub fn onnx_parameters(bytes: &[u8], path: &Path) -> Result<u64> {
    let bad = || Error::model(path, "cannot read the ONNX protobuf to count parameters");
    let graph = pb_fields(bytes)
        .ok_or_else(bad)?
        .into_iter()
        .filter(|(f, _, _)| *f == 7)
        .filter_map(|(_, v, _)| v.bytes())
        .next_back();
    let Some(graph) = graph else { return Ok(0) };
    let mut total = 0u64;
    for (f, v, _) in pb_fields(graph).ok_or_else(bad)? {
        if f != 5 {
            continue;
        }
        let tensor = v.bytes().ok_or_else(bad)?;
        let mut n = 1u64;
        let mut constant = false;
        for (tf, tv, _) in pb_fields(tensor).ok_or_else(bad)? {
            if tf == 2 {
                // TensorProto.DataType: INT64 = 7, BOOL = 9.
                constant = matches!(tv, PbValue::Varint(7 | 9));
            } else if tf == 1 {
                match tv {
                    PbValue::Varint(d) => n = n.saturating_mul(d),
                    PbValue::Bytes(packed) => {
                        let mut p = packed;
                        while !p.is_empty() {
                            let (d, rest) = varint(p).ok_or_else(bad)?;
                            n = n.saturating_mul(d);
                            p = rest;
                        }
                    }
                    _ => {}
                }
            }
        }
        if !constant {
            total = total.saturating_add(n);
        }
    }
    Ok(total)
}
