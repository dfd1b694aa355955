//! A panic inside a third-party decoder is that decoder's bug on crafted input, not a reason to crash:
//! [`guarded`] turns it into an error for the file being read. Found by fuzzing: the parquet crate
//! (60.1) indexes out of bounds decoding a BYTE_STREAM_SPLIT page whose header declares more values
//! than its data holds (tests/fuzz_regressions/README.md).

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, returning the panic's message as an error if it panics.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = GUARDED.replace(true);
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(was);
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Installs a panic hook that is silent for the panics [`guarded`] catches (they become errors) and
/// hands every other panic to the hook before it. For binaries (and fuzz targets); the library itself
/// never changes global state.
pub fn quiet_guarded_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.get() {
            previous(info)
        }
    }));
}

/// A record-batch reader whose panics become errors; after one it yields nothing more (the decoder's
/// state is not to be trusted).
pub struct Guarded<I> {
    inner: I,
    failed: bool,
}

impl<I> Guarded<I> {
    /// Wraps `inner`.
    pub fn new(inner: I) -> Self {
        Guarded { inner, failed: false }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>>> Iterator for Guarded<I> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match guarded(|| self.inner.next()) {
            Ok(item) => item,
            Err(msg) => {
                self.failed = true;
                Some(Err(ArrowError::ExternalError(format!("the Parquet decoder failed on this file: {msg}").into())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_ends_the_reader() {
        let items = (0..3).map(|i| -> Result<RecordBatch, ArrowError> {
            if i == 1 {
                panic!("index out of bounds");
            }
            Ok(RecordBatch::new_empty(std::sync::Arc::new(arrow_schema::Schema::empty())))
        });
        let got: Vec<_> = Guarded::new(items).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        let err = got[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("the Parquet decoder failed on this file: index out of bounds"), "{err}");
    }
}
