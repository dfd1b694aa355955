//! Small helpers shared by every module and importing none of them: hashing, atomic files,
//! opening untrusted files, output locks, thread pools, the students' matrix product.

pub mod files;
pub mod fs;
pub mod gemm;
pub mod guard;
pub mod hash;
pub mod lock;
pub mod protobuf;
pub mod remote;
pub mod threads;

pub use files::{open_regular, read_bounded, read_text_bounded, Links, ParquetFile};
pub use fs::{refuse_overlap, resolve, sync_dir, write_atomic};
pub use gemm::gemm;
pub use guard::{guarded, quiet_guarded_panics, Guarded};
pub use hash::{hex, sha256_file, sha256_hex, sha256_of, splitmix64};
pub use lock::OutputLock;
pub use remote::is_url;
pub use threads::{human_bytes, physical_memory, with_threads};

/// `s` cut to its first `max` characters, with `...` when it was longer: untrusted text quoted in an
/// error message stays one short line.
pub fn clip(s: &str, max: usize) -> String {
    let c: String = s.chars().take(max).collect();
    if c.len() < s.len() {
        format!("{c}...")
    } else {
        c
    }
}
