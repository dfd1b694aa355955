//! How long-running work reports progress without printing: the binary draws bars, tests pass
//! [`NoProgress`].

/// Receives progress from long-running library calls. All methods default to doing nothing.
pub trait Progress: Sync {
    /// A phase starts; `total` in its units when known.
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// A status line for the current phase (e.g. the last epoch's loss).
    fn message(&self, _text: &str) {}
    /// The phase ended.
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
