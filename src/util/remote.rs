//! Objects on object storage, named by URL: `s3://bucket/key` (also `s3a://`), `gs://bucket/key`,
//! `az://container/key` (also `abfs://`, `abfss://`, `azure://`). `file://` URLs are plain paths
//! ([`local_path`]) and never come here.
//!
//! A URL travels through softlabel as a `PathBuf` holding the URL's text, so every error that names a
//! path names the URL, and a dataset's part is `url.join("part-00000.parquet")` as on disk.
//! [`is_url`] tells the two apart; [`crate::util::files`] sends URLs here.
//!
//! Stores are built by the `object_store` crate from the standard environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) and
//! the options given to [`set_options`] (`--storage-option KEY=VALUE`), which win. Every request has a
//! timeout and is retried with backoff on server errors and dropped connections; a failure names the
//! URL. The calls block: they run on one small Tokio runtime shared by the process.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::Digest;

use crate::error::{Error, Result};

/// Schemes that name object storage.
const SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];

/// Each request's time limit (the whole request, body included) unless a storage option sets `timeout`.
const TIMEOUT: &str = "120s";
/// Connecting's time limit unless a storage option sets `connect_timeout`.
const CONNECT_TIMEOUT: &str = "10s";
/// Attempts after the first for a request that failed with a server error or a dropped connection.
const RETRIES: usize = 5;
/// Parts of a multipart upload (S3's minimum part is 5 MiB); files up to this size go in one request.
pub const UPLOAD_CHUNK: usize = 8 << 20;
/// Multipart chunks in flight at once (memory: this many chunks).
const UPLOAD_CONCURRENCY: usize = 4;

/// Whether `path` is an object-storage URL (see the module documentation).
pub fn is_url(path: &Path) -> bool {
    path.to_str().and_then(|s| s.split_once("://")).is_some_and(|(scheme, _)| SCHEMES.contains(&scheme))
}

/// A `file://` URL as the local path it names; any other path unchanged.
pub fn local_path(path: &Path) -> PathBuf {
    match path.to_str().and_then(|s| s.strip_prefix("file://")) {
        Some(rest) => PathBuf::from(rest),
        None => path.to_path_buf(),
    }
}

/// The storage options of this process (`--storage-option`), set once before any store is built.
static OPTIONS: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Sets the storage options every store is built with (`KEY=VALUE` pairs, as `object_store` names the
/// keys: `aws_endpoint`, `aws_access_key_id`, `allow_http`, `timeout`, ...). Call it once, before any
/// URL is read; a second call is refused.
pub fn set_options(options: Vec<(String, String)>) -> Result<()> {
    OPTIONS.set(options).map_err(|_| Error::Internal("storage options are set once".into()))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sl-io")
            .enable_all()
            .build()
            .expect("a Tokio runtime for object storage")
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Stores already built, by `scheme://bucket`.
fn stores() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

macro_rules! build_store {
    ($builder:ty, $root:expr, $url:expr) => {{
        let mut b = <$builder>::from_env().with_url($root.clone());
        let defaults = [("timeout", TIMEOUT), ("connect_timeout", CONNECT_TIMEOUT)];
        for (k, v) in defaults {
            b = b.with_config(k.parse().map_err(|e| Error::Internal(format!("{k}: {e}")))?, v);
        }
        for (k, v) in OPTIONS.get().map(Vec::as_slice).unwrap_or_default() {
            let key = k.to_ascii_lowercase().parse().map_err(|_| {
                Error::Config(format!("--storage-option {k}: not an option of {} (object_store's key names)", $root))
            })?;
            b = b.with_config(key, v.clone());
        }
        let retry = object_store::RetryConfig { max_retries: RETRIES, ..Default::default() };
        Arc::new(b.with_retry(retry).build().map_err(|e| failed($url, e))?) as Arc<dyn ObjectStore>
    }};
}

/// One object (or, for a dataset, the prefix its objects live under).
#[derive(Debug, Clone)]
pub struct Object {
    store: Arc<dyn ObjectStore>,
    key: Key,
    /// The URL, as the user wrote it (joined with names below it): named in every error.
    url: PathBuf,
}

/// An object-store error as softlabel's, naming the URL. A missing object keeps `NotFound`.
fn failed(url: &Path, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            std::io::ErrorKind::PermissionDenied
        }
        object_store::Error::AlreadyExists { .. } => std::io::ErrorKind::AlreadyExists,
        _ => std::io::ErrorKind::Other,
    };
    let message = match kind {
        std::io::ErrorKind::NotFound => "not found".to_string(),
        std::io::ErrorKind::PermissionDenied => format!(
            "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, \
             GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_*, or --storage-option): {}",
            crate::util::clip(&e.to_string(), 300)
        ),
        _ => format!("object storage request failed: {}", crate::util::clip(&e.to_string(), 400)),
    };
    // One line: a store's error may carry its response body (XML) across lines.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    Error::io(url, std::io::Error::new(kind, message))
}

impl Object {
    /// The object a URL names (see [`is_url`]).
    pub fn at(url: &Path) -> Result<Object> {
        let text = url.to_str().ok_or_else(|| Error::Config(format!("{}: not a UTF-8 URL", url.display())))?;
        let parsed = url::Url::parse(text).map_err(|e| Error::Config(format!("{text}: not a valid URL: {e}")))?;
        let bucket = parsed.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(Error::Config(format!("{text}: names no bucket or container")));
        }
        let scheme = parsed.scheme();
        let root = format!("{scheme}://{bucket}");
        let key = Key::from_url_path(parsed.path())
            .map_err(|e| Error::Config(format!("{text}: not a valid object path: {e}")))?;
        let store = {
            let mut cache = stores().lock().map_err(|_| Error::Internal("store cache poisoned".into()))?;
            match cache.get(&root) {
                Some(s) => s.clone(),
                None => {
                    let s = match scheme {
                        "s3" | "s3a" => build_store!(object_store::aws::AmazonS3Builder, root, url),
                        "gs" => build_store!(object_store::gcp::GoogleCloudStorageBuilder, root, url),
                        _ => build_store!(object_store::azure::MicrosoftAzureBuilder, root, url),
                    };
                    cache.insert(root.clone(), s.clone());
                    s
                }
            }
        };
        Ok(Object { store, key, url: url.to_path_buf() })
    }

    /// The object `name` below this one (a dataset's part below its prefix).
    pub fn child(&self, name: &str) -> Object {
        Object { store: self.store.clone(), key: self.key.clone().join(name), url: self.url.join(name) }
    }

    /// The URL.
    pub fn url(&self) -> &Path {
        &self.url
    }

    /// The object's size, or `None` if there is no such object.
    pub fn size(&self) -> Result<Option<u64>> {
        match block_on(self.store.head(&self.key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(&self.url, e)),
        }
    }

    /// The whole object if it holds at most `max` bytes; `what` names it in the refusal.
    pub fn get_bounded(&self, max: u64, what: &str) -> Result<Vec<u8>> {
        let size = self.size()?.ok_or_else(|| failed(&self.url, not_found(&self.key)))?;
        if size > max {
            return Err(Error::data(&self.url, format!("is {size} bytes; {what} is at most {max} bytes")));
        }
        let bytes = self.range(0, size as usize)?;
        Ok(bytes.to_vec())
    }

    /// `len` bytes from `start` (one range request).
    pub fn range(&self, start: u64, len: usize) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        block_on(self.store.get_range(&self.key, start..start + len as u64)).map_err(|e| failed(&self.url, e))
    }

    /// The sha256 of the object's bytes, streamed (memory: one network chunk), with its size.
    pub fn sha256(&self) -> Result<(String, u64)> {
        let url = &self.url;
        block_on(async {
            let mut stream = self.store.get(&self.key).await.map_err(|e| failed(url, e))?.into_stream();
            let mut h = sha2::Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| failed(url, e))?;
                n += chunk.len() as u64;
                h.update(&chunk);
            }
            Ok((crate::util::hex(&h.finalize()), n))
        })
    }

    /// Writes the object whole (one request; replaces an object of that name).
    pub fn put(&self, bytes: Vec<u8>) -> Result<()> {
        block_on(self.store.put(&self.key, PutPayload::from(bytes))).map(|_| ()).map_err(|e| failed(&self.url, e))
    }

    /// Writes the object only if no object of that name exists (a conditional put): `false` if one does.
    pub fn put_new(&self, bytes: Vec<u8>) -> Result<bool> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match block_on(self.store.put_opts(&self.key, PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(failed(&self.url, e)),
        }
    }

    /// Uploads a local file as this object: one request up to [`UPLOAD_CHUNK`] bytes, else a multipart
    /// upload (chunks read as they are sent; an upload that fails is aborted). Either way the object
    /// appears whole or not at all: the store makes it visible only when the upload completes.
    pub fn upload(&self, file: &Path) -> Result<()> {
        let (mut f, len) = crate::util::open_regular(file, crate::util::Links::Refuse)?;
        if len <= UPLOAD_CHUNK as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            (&mut f).take(len).read_to_end(&mut bytes).map_err(|e| Error::io(file, e))?;
            return self.put(bytes);
        }
        let url = &self.url;
        block_on(async {
            let upload = self.store.put_multipart(&self.key).await.map_err(|e| failed(url, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
            let mut buf = vec![0u8; 1 << 20];
            let sent: Result<()> = async {
                loop {
                    writer.wait_for_capacity(UPLOAD_CONCURRENCY).await.map_err(|e| failed(url, e))?;
                    let n = f.read(&mut buf).map_err(|e| Error::io(file, e))?;
                    if n == 0 {
                        return Ok(());
                    }
                    writer.write(&buf[..n]);
                }
            }
            .await;
            match sent {
                Ok(()) => writer.finish().await.map(|_| ()).map_err(|e| failed(url, e)),
                Err(e) => {
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })
    }

    /// Writes the object's bytes to a local file (streamed).
    pub fn download(&self, file: &Path) -> Result<()> {
        use std::io::Write;
        let url = &self.url;
        let mut out = std::fs::File::create(file).map_err(|e| Error::io(file, e))?;
        block_on(async {
            let mut stream = self.store.get(&self.key).await.map_err(|e| failed(url, e))?.into_stream();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk.map_err(|e| failed(url, e))?).map_err(|e| Error::io(file, e))?;
            }
            out.sync_all().map_err(|e| Error::io(file, e))
        })
    }

    /// Removes the object (a missing one is not an error).
    pub fn delete(&self) -> Result<()> {
        match block_on(self.store.delete(&self.key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(&self.url, e)),
        }
    }

    /// The names and sizes of the objects directly below this prefix (not deeper).
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let listed = block_on(self.store.list_with_delimiter(Some(&self.key))).map_err(|e| failed(&self.url, e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.size)))
            .chain(listed.common_prefixes.into_iter().filter_map(|p| p.filename().map(|n| (format!("{n}/"), 0))))
            .collect())
    }
}

fn not_found(key: &Key) -> object_store::Error {
    object_store::Error::NotFound { path: key.to_string(), source: "no such object".into() }
}

/// An object read by range requests for the Parquet readers, with one cached block: a page header read
/// fetches the block it starts (at least [`READ_AHEAD`] bytes), so the page's data that follows is
/// usually served from memory. Memory: one block per open file.
#[derive(Debug)]
pub struct RemoteFile {
    object: Object,
    len: u64,
    block: Mutex<(u64, Bytes)>,
}

/// Bytes fetched at least per range request.
pub const READ_AHEAD: usize = 1 << 20;

impl RemoteFile {
    /// Opens the object at `url` (one HEAD request for its size).
    pub fn open(url: &Path) -> Result<RemoteFile> {
        let object = Object::at(url)?;
        let len = object.size()?.ok_or_else(|| failed(url, not_found(&object.key)))?;
        Ok(RemoteFile { object, len, block: Mutex::new((0, Bytes::new())) })
    }

    /// The object's size when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// Up to `len` bytes from `start` (fewer at the end of the object).
    pub fn read_at(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
        if start >= self.len || len == 0 {
            return Ok(Bytes::new());
        }
        let len = len.min((self.len - start) as usize);
        let mut block = self.block.lock().map_err(|_| std::io::Error::other("read cache poisoned"))?;
        let (at, bytes) = &*block;
        if start >= *at && start + len as u64 <= at + bytes.len() as u64 {
            let from = (start - at) as usize;
            return Ok(bytes.slice(from..from + len));
        }
        let fetch = len.max(READ_AHEAD).min((self.len - start) as usize);
        let got = self.object.range(start, fetch).map_err(std::io::Error::other)?;
        if got.len() != fetch {
            return Err(std::io::Error::other(format!(
                "{}: asked for {fetch} bytes at {start}, got {}",
                self.object.url.display(),
                got.len()
            )));
        }
        *block = (start, got.clone());
        Ok(got.slice(0..len))
    }
}

/// A sequential reader over a [`RemoteFile`] from a position.
#[derive(Debug)]
pub struct RemoteRead {
    file: Arc<RemoteFile>,
    pos: u64,
}

impl RemoteRead {
    /// Reads `file` from `pos`.
    pub fn new(file: Arc<RemoteFile>, pos: u64) -> RemoteRead {
        RemoteRead { file, pos }
    }
}

impl Read for RemoteRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.file.read_at(self.pos, buf.len())?;
        buf[..got.len()].copy_from_slice(&got);
        self.pos += got.len() as u64;
        Ok(got.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for u in ["s3://b/p", "s3a://b/p", "gs://b/x.parquet", "az://c/p", "abfss://c@a.dfs.core.windows.net/p"] {
            assert!(is_url(Path::new(u)), "{u}");
        }
        for p in ["/tmp/x", "out", "file:///tmp/x", "http://h/x", "s3:/b/p", "./s3://b"] {
            assert!(!is_url(Path::new(p)), "{p}");
        }
        assert_eq!(local_path(Path::new("file:///tmp/x")), PathBuf::from("/tmp/x"));
        assert_eq!(local_path(Path::new("out")), PathBuf::from("out"));
        // A part below a dataset URL is the URL joined with its name, as a path is.
        assert_eq!(Path::new("s3://b/p").join("part-00000.parquet"), PathBuf::from("s3://b/p/part-00000.parquet"));
    }

    #[test]
    fn a_url_without_a_bucket_is_refused_before_any_request() {
        let e = Object::at(Path::new("s3:///key")).unwrap_err().to_string();
        assert!(e.contains("names no bucket"), "{e}");
    }
}
