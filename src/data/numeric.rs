//! Conversions of Arrow numeric arrays to the element types teachers and students take.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};

macro_rules! map_numeric {
    ($a:expr, $f:expr, [$($t:ty),*]) => {{
        let a: &dyn Array = $a;
        match a.data_type() {
            $(dt if dt == &<$t>::DATA_TYPE => Some(a.as_primitive::<$t>().values().iter().map(|&v| $f(v)).collect()),)*
            _ => None,
        }
    }};
}

/// `map_numeric!` over every integer and float type, casting to `$t`.
macro_rules! numeric_as {
    ($a:expr, $t:ty) => {
        map_numeric!(
            $a,
            |v| v as $t,
            [
                UInt8Type,
                Int8Type,
                UInt16Type,
                Int16Type,
                UInt32Type,
                Int32Type,
                UInt64Type,
                Int64Type,
                Float32Type,
                Float64Type
            ]
        )
    };
}

/// Any integer array as i128 values (`None` for nulls); `None` if the type is not an integer.
pub(crate) fn integers_to_i128(a: &ArrayRef) -> Option<Vec<Option<i128>>> {
    let vals: Vec<i128> = map_numeric!(
        a.as_ref(),
        |v| v as i128,
        [UInt8Type, Int8Type, UInt16Type, Int16Type, UInt32Type, Int32Type, UInt64Type, Int64Type]
    )?;
    Some(vals.into_iter().enumerate().map(|(i, v)| if a.is_null(i) { None } else { Some(v) }).collect())
}

/// Any numeric array's values as f32 (nulls read as their placeholder value).
#[allow(clippy::unnecessary_cast)] // the macro casts every type, f32 itself included
pub fn numeric_to_f32(a: &dyn Array) -> Option<Vec<f32>> {
    numeric_as!(a, f32)
}

/// Any numeric array's values as i64 (floats truncated toward zero).
#[allow(clippy::unnecessary_cast)] // the macro casts every type, i64 itself included
pub fn numeric_to_i64(a: &dyn Array) -> Option<Vec<i64>> {
    numeric_as!(a, i64)
}

/// Any numeric array's values as f64.
#[allow(clippy::unnecessary_cast)] // the macro casts every type, f64 itself included
pub fn numeric_to_f64(a: &dyn Array) -> Option<Vec<f64>> {
    numeric_as!(a, f64)
}

/// Any numeric array's values as u8; the position and value of the first one that is not an integer in
/// 0..=255 on error.
pub fn numeric_to_u8(a: &dyn Array) -> std::result::Result<Vec<u8>, (usize, f64)> {
    if let Some(u) = a.as_primitive_opt::<UInt8Type>() {
        return Ok(u.values().to_vec());
    }
    let v = numeric_to_f64(a).ok_or((0, f64::NAN))?;
    v.iter()
        .enumerate()
        .map(|(i, &x)| if x.fract() == 0.0 && (0.0..=255.0).contains(&x) { Ok(x as u8) } else { Err((i, x)) })
        .collect()
}

/// Any numeric array's values as i32 (out-of-range values saturate).
pub fn numeric_to_i32(a: &dyn Array) -> Option<Vec<i32>> {
    numeric_to_i64(a).map(|v| v.into_iter().map(|x| x.clamp(i32::MIN as i64, i32::MAX as i64) as i32).collect())
}
