//! sha256 helpers and the splitmix64 finaliser (the schema's fixed hash for shards, views and draws).

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of a file's content, in hex. The file must be a regular file (a FIFO or a device such as
/// /dev/zero is refused instead of read forever); a final symbolic link is followed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let (file, _) = super::files::open_regular(path, super::files::Links::Follow)?;
    sha256_of(&file, path)
}

/// sha256 of an opened file's content from its current position, in hex; `path` is named in errors.
pub fn sha256_of(mut file: &File, path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(hex(&h.finalize()))
}

/// The splitmix64 finaliser (Steele, Lea, Flood 2014): a fixed, well-mixed 64-bit hash. Part of the
/// schema contract (shards, views, sampled draws): never change it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
