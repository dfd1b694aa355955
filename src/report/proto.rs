//! Reading an ONNX model's protobuf just far enough to count its parameters.

use std::path::Path;

use crate::error::{Error, Result};

/// Counts the elements of an ONNX model's initializers (reads the protobuf directly), leaving out int64
/// and bool tensors: shapes, axes and index constants, not weights.
pub fn onnx_parameters(bytes: &[u8], path: &Path) -> Result<u64> {
    let bad = || Error::model(path, "cannot read the ONNX protobuf to count parameters");
    let graph = pb_fields(bytes)
        .ok_or_else(bad)?
        .into_iter()
        .filter(|(f, _)| *f == 7)
        .filter_map(|(_, v)| v.bytes())
        .next_back();
    let Some(graph) = graph else { return Ok(0) };
    let mut total = 0u64;
    for (f, v) in pb_fields(graph).ok_or_else(bad)? {
        if f != 5 {
            continue;
        }
        let tensor = v.bytes().ok_or_else(bad)?;
        let mut n = 1u64;
        let mut constant = false;
        for (tf, tv) in pb_fields(tensor).ok_or_else(bad)? {
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

enum PbValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> PbValue<'a> {
    fn bytes(self) -> Option<&'a [u8]> {
        match self {
            PbValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// The top-level fields of a protobuf message; `None` if it is malformed.
fn pb_fields(mut b: &[u8]) -> Option<Vec<(u64, PbValue<'_>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = varint(b)?;
        b = rest;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => {
                let (v, rest) = varint(b)?;
                b = rest;
                PbValue::Varint(v)
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                b = b.get(n..)?;
                PbValue::Fixed
            }
            2 => {
                let (len, rest) = varint(b)?;
                let len = usize::try_from(len).ok()?;
                let v = rest.get(..len)?;
                b = &rest[len..];
                PbValue::Bytes(v)
            }
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}
