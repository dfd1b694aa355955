//! A minimal protobuf reader and writer: enough of the wire format to read an ONNX model's fields and
//! to append fields to its messages (all else is copied through byte for byte).

/// A field's value.
pub(crate) enum PbValue<'a> {
    /// A varint.
    Varint(u64),
    /// Length-delimited bytes (a string, a message, packed values).
    Bytes(&'a [u8]),
    /// A 32- or 64-bit fixed value (not decoded).
    Fixed,
}

impl<'a> PbValue<'a> {
    /// The bytes of a length-delimited field, by reference.
    pub(crate) fn bytes_ref(&self) -> Option<&'a [u8]> {
        match self {
            PbValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes of a length-delimited field.
    pub(crate) fn bytes(self) -> Option<&'a [u8]> {
        match self {
            PbValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A varint and the bytes after it.
pub(crate) fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// The top-level fields of a protobuf message: number, value and the field's whole encoding (key
/// included, to copy it through unchanged); `None` if the message is malformed.
pub(crate) fn pb_fields(mut b: &[u8]) -> Option<Vec<(u64, PbValue<'_>, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let start = b;
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
        out.push((field, value, &start[..start.len() - b.len()]));
    }
    Some(out)
}

/// Appends `value` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends field `field` as length-delimited `bytes`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
