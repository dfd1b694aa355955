//! A batch's logits, row-major `[rows, classes]`: in a `Vec`, or still in the tensor ONNX Runtime wrote
//! them to. A vocabulary-sized output (a 32,000-word LM at 1,024 positions is 131 MB a batch) is then
//! handed to the writer thread without a copy: copying it out cost the scoring thread a tenth of
//! inference, and the fresh pages as much again in page faults.

use std::ops::{Deref, DerefMut};

use ort::value::DynValue;

/// Row-major logits (see the module).
pub struct Logits(Values);

enum Values {
    Owned(Vec<f32>),
    /// The tensor, and its first `len` float32 values (the data ONNX Runtime allocated for it, which
    /// stays where it is while the tensor lives, wherever the `DynValue` handle moves).
    Ort {
        _tensor: DynValue,
        ptr: *mut f32,
        len: usize,
    },
}

// SAFETY: the tensor is Send (ort implements it for every Value) and `ptr` points into its data, which
// only this Logits reaches: the handle moves with the pointer and nothing else holds either.
unsafe impl Send for Logits {}

impl Logits {
    /// The first `len` values of a float32 tensor, without copying them (the tensor back when it is not
    /// float32 or holds fewer values).
    pub fn from_tensor(mut tensor: DynValue, len: usize) -> std::result::Result<Logits, DynValue> {
        let ptr = match tensor.try_extract_tensor_mut::<f32>() {
            Ok((_, values)) if values.len() >= len => values.as_mut_ptr(),
            _ => return Err(tensor),
        };
        Ok(Logits(Values::Ort { _tensor: tensor, ptr, len }))
    }

    /// The values as a `Vec` (copied out of a tensor).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Values::Owned(v) => v,
            Values::Ort { .. } => self.to_vec(),
        }
    }

    /// The values from `at` on, leaving those before (as `Vec::split_off`).
    pub fn split_off(&mut self, at: usize) -> Logits {
        let tail = self[at..].to_vec();
        match &mut self.0 {
            Values::Owned(v) => v.truncate(at),
            Values::Ort { len, .. } => *len = at,
        }
        Logits(Values::Owned(tail))
    }
}

impl From<Vec<f32>> for Logits {
    fn from(v: Vec<f32>) -> Self {
        Logits(Values::Owned(v))
    }
}

impl Default for Logits {
    fn default() -> Self {
        Logits(Values::Owned(Vec::new()))
    }
}

impl Deref for Logits {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Values::Owned(v) => v,
            // SAFETY: `ptr` points at the tensor's data, at least `len` float32 values (checked when
            // made), alive as long as `_tensor`, which self owns.
            Values::Ort { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl DerefMut for Logits {
    fn deref_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            Values::Owned(v) => v,
            // SAFETY: as for deref; `&mut self` makes this the only reference.
            Values::Ort { ptr, len, .. } => unsafe { std::slice::from_raw_parts_mut(*ptr, *len) },
        }
    }
}

impl std::fmt::Debug for Logits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self.0, Values::Owned(_)) { "owned" } else { "tensor" };
        write!(f, "Logits({} values, {kind})", self.len())
    }
}

impl Clone for Logits {
    fn clone(&self) -> Self {
        Logits(Values::Owned(self.to_vec()))
    }
}
