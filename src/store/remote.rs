//! Writing a dataset to object storage (`precompute --out s3://bucket/prefix`, `merge --out URL`).
//!
//! The dataset is written as on disk into a local staging folder, and each part is uploaded once it is
//! committed there ([`Publish`]): the part (multipart when large: the store shows it only once whole),
//! then the journal `_progress.json` naming it, and `_manifest.json` last. The store therefore commits
//! in the folder's order: a prefix without a manifest is never a dataset, and the journal on the store
//! is what `--resume` continues from, on this machine or another (committed parts are fetched back
//! into staging and checked against the journal's sha256). A part deleted from staging once uploaded
//! keeps local disk at about one part.
//!
//! One writer per prefix: `_lock` is created with a conditional put (`If-None-Match: *`), so a second
//! writer is refused naming the first; it is removed when the writer ends. A lock left by a killed
//! process on this host (its pid gone) is taken over; one from another host must be removed by hand,
//! as the refusal says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{is_dataset_file, is_part_name, Manifest, PartInfo, Publish, MANIFEST, PROGRESS};
use crate::error::{Error, Result};
use crate::util::remote::Object;

/// The lock object below a dataset prefix.
pub const LOCK: &str = "_lock";

/// A dataset being written to a URL: the prefix, its lock and the local staging folder.
#[derive(Debug)]
pub struct RemoteOutput {
    prefix: Object,
    lock: Option<Object>,
    staging: PathBuf,
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

impl RemoteOutput {
    /// Takes the lock on `url` and prepares staging: with `resume`, the committed parts the store's
    /// journal names (or a finished dataset) are fetched into staging; otherwise the prefix must hold
    /// no dataset unless `overwrite`, and then softlabel's objects are removed (manifest first).
    pub fn begin(url: &Path, overwrite: bool, resume: bool) -> Result<RemoteOutput> {
        let prefix = Object::at(url)?;
        let lock = take_lock(&prefix)?;
        let tag = &crate::util::sha256_hex(url.to_string_lossy().as_bytes())[..16];
        let staging = std::env::temp_dir().join(format!("softlabel-staging-{tag}"));
        let out = RemoteOutput { prefix, lock: Some(lock), staging };
        if out.staging.exists() {
            std::fs::remove_dir_all(&out.staging).map_err(|e| Error::io(&out.staging, e))?;
        }
        std::fs::create_dir_all(&out.staging).map_err(|e| Error::io(&out.staging, e))?;
        let listed: Vec<(String, u64)> = out.prefix.list()?.into_iter().filter(|(n, _)| n != LOCK).collect();
        let has = |name: &str| listed.iter().any(|(n, _)| n == name);
        if resume {
            if has(PROGRESS) {
                let journal = out.fetch(PROGRESS)?;
                for part in committed_parts(&journal)? {
                    out.fetch(&part)?;
                }
            } else if has(MANIFEST) {
                let manifest = out.fetch(MANIFEST)?;
                let m = Manifest::read(manifest.parent().unwrap_or(&out.staging))?;
                for part in &m.parts {
                    out.fetch(&part.file)?;
                }
            }
            return Ok(out);
        }
        if listed.is_empty() {
            return Ok(out);
        }
        if !overwrite {
            return Err(super::writer::not_empty(url, "prefix", &format!("{} objects", listed.len())));
        }
        out.remove_dataset_objects(&listed, &[])?;
        Ok(out)
    }

    /// The local folder the dataset is written in before upload.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The uploader the writer calls as it commits.
    pub fn publisher(&self) -> Arc<dyn Publish> {
        Arc::new(Uploader { prefix: self.prefix.clone() })
    }

    /// Ends a finished write: objects of an earlier dataset that `manifest` does not name are removed,
    /// then the lock and the staging folder.
    pub fn finish(mut self, manifest: &Manifest) -> Result<()> {
        let listed: Vec<(String, u64)> = self.prefix.list()?.into_iter().filter(|(n, _)| n != LOCK).collect();
        let keep: Vec<&str> = manifest.parts.iter().map(|p| p.file.as_str()).chain([MANIFEST]).collect::<Vec<_>>();
        let stale: Vec<(String, u64)> =
            listed.into_iter().filter(|(n, _)| is_dataset_file(n) && !keep.contains(&n.as_str())).collect();
        self.remove_dataset_objects(&stale, &keep)?;
        if let Some(lock) = self.lock.take() {
            lock.delete()?;
        }
        Ok(())
    }

    /// Copies the object `name` into staging; returns its local path.
    fn fetch(&self, name: &str) -> Result<PathBuf> {
        let local = self.staging.join(name);
        self.prefix.child(name).download(&local)?;
        Ok(local)
    }

    /// Removes softlabel's objects among `listed` (manifest and journal first) except `keep`; refuses
    /// if an object softlabel did not write is there.
    fn remove_dataset_objects(&self, listed: &[(String, u64)], keep: &[&str]) -> Result<()> {
        if let Some((other, _)) = listed.iter().find(|(n, _)| !is_dataset_file(n)) {
            return Err(Error::dataset(
                self.prefix.url(),
                format!("refused: the prefix holds '{other}', which softlabel did not write"),
            ));
        }
        let mut names: Vec<&str> =
            listed.iter().map(|(n, _)| n.as_str()).filter(|n| !keep.contains(n)).collect::<Vec<_>>();
        names.sort_by_key(|n| !(*n == MANIFEST || *n == PROGRESS));
        for name in names {
            self.prefix.child(name).delete()?;
        }
        Ok(())
    }
}

impl Drop for RemoteOutput {
    fn drop(&mut self) {
        // An ended writer (failed or finished) releases the prefix; the journal stays for --resume.
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.delete() {
                tracing::warn!("{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// The part names a journal lists, each a part file name (never a path outside the prefix).
fn committed_parts(journal: &Path) -> Result<Vec<String>> {
    let text = crate::util::read_text_bounded(
        journal,
        crate::util::Links::Refuse,
        super::MAX_MANIFEST_BYTES,
        "a progress journal",
    )?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::dataset(journal, format!("invalid progress journal: {e}")))?;
    let parts = value.pointer("/manifest/parts").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    parts
        .iter()
        .map(|p| match p.get("file").and_then(|f| f.as_str()) {
            Some(f) if is_part_name(f) => Ok(f.to_string()),
            f => Err(Error::dataset(journal, format!("part name {f:?} is not a part-NNNNN.parquet file name"))),
        })
        .collect()
}

/// Creates `_lock` below `prefix`, or refuses naming its holder (see the module documentation).
fn take_lock(prefix: &Object) -> Result<Object> {
    let lock = prefix.child(LOCK);
    let me = serde_json::json!({ "pid": std::process::id(), "host": crate::util::lock::host() });
    for _ in 0..2 {
        if lock.put_new(me.to_string().into_bytes())? {
            return Ok(lock);
        }
        let holder = lock.get_bounded(4096, "a lock object").unwrap_or_default();
        let holder: serde_json::Value = serde_json::from_slice(&holder).unwrap_or_default();
        let pid = holder.get("pid").and_then(|p| p.as_i64()).unwrap_or(0);
        let host = holder.get("host").and_then(|h| h.as_str()).unwrap_or("an unknown host");
        if host == crate::util::lock::host() && !pid_alive(pid as i32) {
            tracing::warn!(lock = %lock.url().display(), pid, "taking over the lock of a writer that is gone");
            lock.delete()?;
            continue;
        }
        return Err(Error::Config(format!(
            "{} is being written by pid {pid} on {host}; wait for it to finish or stop it (if that writer is \
             gone, delete the lock object {})",
            prefix.url().display(),
            lock.url().display()
        )));
    }
    Err(Error::Config(format!("{}: could not take the lock {}", prefix.url().display(), lock.url().display())))
}

/// Uploads what the writer commits (see the module documentation).
#[derive(Debug)]
struct Uploader {
    prefix: Object,
}

impl Publish for Uploader {
    fn part(&self, local: &Path, part: &PartInfo) -> Result<()> {
        self.prefix.child(&part.file).upload(local)?;
        // The store holds it now: staging keeps about one part.
        std::fs::remove_file(local).map_err(|e| Error::io(local, e))
    }

    fn journal(&self, json: &[u8]) -> Result<()> {
        self.prefix.child(PROGRESS).put(json.to_vec())
    }

    fn manifest(&self, json: &[u8]) -> Result<()> {
        self.prefix.child(MANIFEST).put(json.to_vec())?;
        self.prefix.child(PROGRESS).delete()
    }
}
