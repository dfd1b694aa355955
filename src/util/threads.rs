//! Thread pools.

use crate::error::{Error, Result};

/// Runs `f` on a rayon pool of `threads` threads (0: the global pool).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    if threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
    Ok(pool.install(f))
}
