//! `merge`: combine soft-label datasets (the shards of one run, or runs over disjoint data) into one.
//!
//! Parts are copied byte for byte (so their sha256 stays valid) and renumbered; the new manifest is
//! written last. Every id must appear exactly once across the inputs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::data::SourceInfo;
use crate::error::{Error, Result};
use crate::store::remote::RemoteOutput;
use crate::store::{prepare_dir, Manifest, PartInfo, SoftLabels};
use crate::util::{hex, refuse_overlap, write_atomic, Links, OutputLock, ParquetFile};

/// Fields every input must share, named for error messages.
fn differs(a: &Manifest, b: &Manifest) -> Option<&'static str> {
    if a.teacher.sha256 != b.teacher.sha256 {
        Some("teacher (sha256)")
    } else if a.temperature != b.temperature {
        Some("temperature")
    } else if a.num_classes != b.num_classes {
        Some("number of classes")
    } else if a.class_names != b.class_names {
        Some("class names")
    } else if a.input != b.input {
        Some("input column/type/shape")
    } else if a.schema_version != b.schema_version {
        Some("schema version")
    } else if a.form != b.form || a.float16 != b.float16 || a.label_logit != b.label_logit {
        Some("storage form")
    } else if a.views != b.views {
        Some("views setting")
    } else if a.sequence != b.sequence {
        Some("sequence settings")
    } else {
        None
    }
}

/// Merges `inputs` into `out` (created; must be empty unless `overwrite`). Returns the new manifest.
pub fn merge(inputs: &[PathBuf], out: &Path, overwrite: bool) -> Result<Manifest> {
    if inputs.is_empty() {
        return Err(Error::Config("merge needs at least one input dataset".into()));
    }
    // Before anything is read or touched: an output that is also an input would be emptied first.
    refuse_overlap(out, "--out", &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let remote = crate::util::is_url(out);
    let _lock = if remote { None } else { Some(OutputLock::acquire(out)?) };
    let sets: Vec<SoftLabels> = inputs.iter().map(|d| SoftLabels::open(d)).collect::<Result<_>>()?;
    let first = sets[0].manifest();
    for s in &sets[1..] {
        if let Some(what) = differs(first, s.manifest()) {
            return Err(Error::dataset(
                s.dir(),
                format!("its {what} differs from {}'s: not parts of one dataset", sets[0].dir().display()),
            ));
        }
    }
    let shards: Vec<_> = sets.iter().map(|s| s.manifest().shard).collect();
    let sharded = shards.iter().any(Option::is_some);
    if sharded {
        let count = shards.iter().flatten().map(|s| s.count).next().unwrap_or(0);
        let mut seen = vec![None::<&Path>; count as usize];
        for (s, set) in shards.iter().zip(&sets) {
            let Some(s) = s.filter(|s| s.count == count) else {
                return Err(Error::dataset(set.dir(), format!("is not one of {count} shards like the other inputs")));
            };
            if s.index as usize >= seen.len() {
                return Err(Error::dataset(set.dir(), format!("shard {}/{} is out of range", s.index, s.count)));
            }
            if let Some(other) = seen[s.index as usize] {
                return Err(Error::dataset(
                    set.dir(),
                    format!("shard {}/{count} is also {}", s.index, other.display()),
                ));
            }
            if set.manifest().source.fingerprint != first.source.fingerprint {
                return Err(Error::dataset(set.dir(), "its source data (fingerprint) differs from the other shards'"));
            }
            seen[s.index as usize] = Some(set.dir());
        }
        let missing: Vec<String> =
            (0..count).filter(|&i| seen[i as usize].is_none()).map(|i| format!("{i}/{count}")).collect();
        if !missing.is_empty() {
            return Err(Error::Config(format!("merge is missing shard(s) {}", missing.join(", "))));
        }
    }
    // Every id in exactly one input (and once in it, or once per view or position with views or
    // sequences: `verify` checks those).
    let mut ids = HashSet::new();
    for set in &sets {
        let mut set_ids = set.ids()?;
        if first.views.is_some() || first.sequence.is_some() {
            set_ids.sort_unstable();
            set_ids.dedup();
        }
        for id in set_ids {
            if !ids.insert(id) {
                return Err(Error::dataset(
                    set.dir(),
                    format!("column 'id': id {id} also appears in an earlier input"),
                ));
            }
        }
    }

    // Prepare the folder like a writer would (refusing foreign files), then copy parts in input order
    // (shards by index).
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|&i| shards[i].map_or(i as u32, |s| s.index));
    // An output URL is written through a staging folder, each part uploaded as it is placed there.
    let remote = if remote { Some(RemoteOutput::begin(out, overwrite, false)?) } else { None };
    let publish = remote.as_ref().map(RemoteOutput::publisher);
    let out = remote.as_ref().map_or(out, RemoteOutput::staging);
    prepare_dir(out, overwrite)?;
    let mut manifest = Manifest {
        parts: Vec::new(),
        rows: 0,
        labeled_rows: 0,
        skipped_nonfinite_rows: 0,
        shard: None,
        ..first.clone()
    };
    for &i in &order {
        let set = &sets[i];
        for part in &set.manifest().parts {
            let name = format!("part-{:05}.parquet", manifest.parts.len());
            let tmp = out.join(format!(".{name}.tmp"));
            let from = set.dir().join(&part.file);
            if crate::util::is_url(&from) {
                crate::util::remote::Object::at(&from)?.download(&tmp)?;
            } else {
                std::fs::copy(&from, &tmp).map_err(|e| Error::io(&from, e))?;
                std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
            }
            // The copy is checked like the original: a part changed since `open` is not merged.
            let copied = ParquetFile::open(&tmp, Links::Refuse)?;
            if copied.size() != part.bytes || copied.sha256(&tmp)? != part.sha256 {
                return Err(Error::dataset(&from, "part was changed while it was merged"));
            }
            let placed = out.join(&name);
            std::fs::rename(&tmp, &placed).map_err(|e| Error::io(&placed, e))?;
            let info = PartInfo { file: name, ..part.clone() };
            if let Some(p) = &publish {
                p.part(&placed, &info)?;
            }
            manifest.parts.push(info);
        }
        manifest.rows += set.manifest().rows;
        manifest.labeled_rows += set.manifest().labeled_rows;
        manifest.skipped_nonfinite_rows += set.manifest().skipped_nonfinite_rows;
    }
    if !sharded {
        manifest.source = merged_source(sets.iter().map(|s| &s.manifest().source));
    }
    manifest.seal();
    let json = manifest.to_json()?;
    write_atomic(&out.join(crate::store::MANIFEST), &json)?;
    if let (Some(p), Some(remote)) = (&publish, remote) {
        p.manifest(&json)?;
        remote.finish(&manifest)?;
    }
    Ok(manifest)
}

/// The union of several sources' files, with a fingerprint over all of them.
fn merged_source<'a>(sources: impl Iterator<Item = &'a SourceInfo>) -> SourceInfo {
    let mut files = Vec::new();
    let mut h = Sha256::new();
    for s in sources {
        for f in &s.files {
            if !files.contains(f) {
                let name = Path::new(&f.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                h.update(format!("{name}\0{}\0{}\n", f.bytes, f.sha256).as_bytes());
                files.push(f.clone());
            }
        }
    }
    SourceInfo { files, fingerprint: hex(&h.finalize()) }
}
