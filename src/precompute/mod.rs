//! `precompute`: run the teacher over a dataset and write a soft-label dataset, in three parts:
//! [`plan`] (settings, the data source, the teacher and its first-batch probe, the manifest and the
//! writer), [`score`] (one batch of source rows into scored rows, without threads) and `stages`
//! (reader thread -> inference -> writer thread, joined by bounded channels).

pub mod plan;
pub mod score;
mod stages;

pub use crate::config::teacher::PrecomputeSettings;
pub use plan::Plan;
pub use score::{Infer, Primed, Probe, Scored, Scorer};

use crate::error::Result;
use crate::progress::Progress;
use crate::store::Manifest;

/// Runs the teacher over `settings.data` and writes the dataset; returns its manifest. An `out` that is
/// an object-storage URL is written through a local staging folder, part by part (`store::remote`).
pub fn precompute(settings: &PrecomputeSettings, progress: &dyn Progress) -> Result<Manifest> {
    if crate::util::is_url(&settings.out) {
        let remote =
            crate::store::remote::RemoteOutput::begin(&settings.out, settings.writer.overwrite, settings.resume)?;
        let staged = PrecomputeSettings {
            out: remote.staging().to_path_buf(),
            writer: crate::store::WriterOptions { publish: Some(remote.publisher()), ..settings.writer.clone() },
            ..settings.clone()
        };
        let manifest = precompute_here(&staged, progress)?;
        remote.finish(&manifest)?;
        return Ok(manifest);
    }
    precompute_here(settings, progress)
}

fn precompute_here(settings: &PrecomputeSettings, progress: &dyn Progress) -> Result<Manifest> {
    match Plan::make(settings)? {
        plan::Planned::Complete(m) => Ok(*m),
        plan::Planned::Run(plan) => stages::run(*plan, progress),
    }
}
