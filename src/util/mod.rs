//! Small helpers shared by every module and importing none of them: hashing, atomic files, thread pools.

pub mod fs;
pub mod hash;
pub mod threads;

pub use fs::{sync_dir, write_atomic};
pub use hash::{hex, sha256_file, sha256_hex, splitmix64};
pub use threads::with_threads;
