//! Image folders in torchvision's ImageFolder layout: `DIR/<class>/.../<image>.png|jpg|jpeg`. Classes
//! are the subfolder names, sorted (label = position); ids are the positions of the images' relative
//! paths in byte order, so they are the same on every machine and run. Each image is decoded (PNG and
//! JPEG, the `image` crate) to uint8 in channel-major order, `[C, H, W]` with the channels of the first
//! image (1 for grey, 3 for colour; alpha dropped, others converted to them), pixel values as they are
//! (0-255, as the Parquet path stores them). Every image must have the first one's height and width.
//!
//! The folder is untrusted: links are not followed, the walk is bounded in depth and files, a decoder
//! gets memory and size limits, and a corrupt or truncated image is an error naming its file. Batches
//! decode in parallel (rayon) on the reader thread, overlapping inference.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, UInt8Array};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Batch, ElementType, Source, SourceFile, SourceInfo};
use crate::error::{Error, Result};
use crate::util::hex;

/// Folder levels below a class folder walked at most.
const MAX_DEPTH: usize = 16;
/// Images read at most.
const MAX_IMAGES: usize = 50_000_000;
/// The largest image side decoded.
const MAX_SIDE: u32 = 16_384;
/// The most memory one decoder may allocate.
const MAX_DECODE_BYTES: u64 = 1 << 30;

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether `dir` looks like an image folder: no Parquet files, and a subfolder.
pub fn looks_like_image_folder(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut sub = false;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "parquet") || p.file_name().is_some_and(|n| n == "_manifest.json") {
            return false;
        }
        sub |= e.file_type().is_ok_and(|t| t.is_dir());
    }
    sub
}

/// An image folder as input.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    paths: Vec<PathBuf>,
    labels: Vec<i64>,
    classes: Vec<String>,
    /// Channels, height, width.
    shape: [usize; 3],
}

impl ImageFolder {
    /// Lists `root`'s class folders and images (sorted by relative path) and reads the first image's
    /// size.
    pub fn open(root: &Path) -> Result<Self> {
        let mut classes: Vec<String> = Vec::new();
        for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
            let e = e.map_err(|e| Error::io(root, e))?;
            if e.file_type().map_err(|err| Error::io(e.path(), err))?.is_dir() {
                classes.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        let mut found: Vec<(String, PathBuf, i64)> = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            walk(&root.join(class), class, 0, label as i64, &mut found)?;
        }
        if found.is_empty() {
            return Err(Error::data(
                root,
                "holds no *.parquet files, and no .png, .jpg or .jpeg images in class subfolders (an image folder)",
            ));
        }
        found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let labels: Vec<i64> = found.iter().map(|f| f.2).collect();
        let paths: Vec<PathBuf> = found.into_iter().map(|f| f.1).collect();
        let first = decode(&paths[0])?;
        let c = if first.color().has_color() { 3 } else { 1 };
        let shape = [c, first.height() as usize, first.width() as usize];
        if shape.iter().product::<usize>() > crate::store::MAX_INPUT_VALUES {
            return Err(Error::data(
                &paths[0],
                format!("is {shape:?} values, more than the {} a row may hold", crate::store::MAX_INPUT_VALUES),
            ));
        }
        tracing::info!(images = paths.len(), classes = classes.len(), ?shape, "image folder");
        Ok(ImageFolder { root: root.to_path_buf(), files: vec![root.to_path_buf()], paths, labels, classes, shape })
    }

    /// The class names (subfolders), in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Image `i` as `[C, H, W]` uint8.
    fn pixels(&self, i: usize) -> Result<Vec<u8>> {
        let path = &self.paths[i];
        let img = decode(path)?;
        let [c, h, w] = self.shape;
        if (img.height() as usize, img.width() as usize) != (h, w) {
            return Err(Error::data(
                path,
                format!(
                    "is {}x{} (width x height), the folder's first image {}x{}: resizing is not supported yet",
                    img.width(),
                    img.height(),
                    w,
                    h
                ),
            ));
        }
        let hwc: Vec<u8> = if c == 1 { img.into_luma8().into_raw() } else { img.into_rgb8().into_raw() };
        if c == 1 {
            return Ok(hwc);
        }
        let mut chw = vec![0u8; c * h * w];
        for (p, px) in hwc.chunks_exact(c).enumerate() {
            for (k, v) in px.iter().enumerate() {
                chw[k * h * w + p] = *v;
            }
        }
        Ok(chw)
    }
}

fn walk(dir: &Path, rel: &str, depth: usize, label: i64, out: &mut Vec<(String, PathBuf, i64)>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::data(dir, format!("is more than {MAX_DEPTH} folders deep inside its class folder")));
    }
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        // Links are not followed: a shared folder cannot reach outside itself.
        let t = e.file_type().map_err(|err| Error::io(&p, err))?;
        let r = format!("{rel}/{}", e.file_name().to_string_lossy());
        if t.is_dir() {
            walk(&p, &r, depth + 1, label, out)?;
        } else if t.is_file() && is_image(&p) {
            if out.len() >= MAX_IMAGES {
                return Err(Error::data(dir, format!("the folder holds more than {MAX_IMAGES} images")));
            }
            out.push((r, p, label));
        }
    }
    Ok(())
}

/// Decodes one image with bounded memory and size; errors name the file.
fn decode(path: &Path) -> Result<image::DynamicImage> {
    let (file, _) = crate::util::open_regular(path, crate::util::Links::Refuse)?;
    let mut reader =
        image::ImageReader::new(std::io::BufReader::new(file)).with_guessed_format().map_err(|e| Error::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoded = crate::util::guarded(|| reader.decode())
        .map_err(|p| Error::data(path, format!("cannot decode the image: the decoder failed: {p}")))?;
    decoded.map_err(|e| Error::data(path, format!("cannot decode the image ({e})")))
}

impl Source for ImageFolder {
    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn rows(&self) -> u64 {
        self.paths.len() as u64
    }

    fn label_column(&self) -> Option<&str> {
        Some("class folder")
    }

    fn id_column(&self) -> Option<&str> {
        None
    }

    fn input_name(&self) -> String {
        "image".into()
    }

    fn width(&self) -> Option<usize> {
        Some(self.shape.iter().product())
    }

    fn element_type(&self) -> ElementType {
        ElementType::U8
    }

    fn class_names(&self) -> Option<Vec<String>> {
        Some(self.classes.clone())
    }

    /// sha256 over every image's relative path, size and sha256 (in id order), recorded as one entry
    /// for the folder (a manifest listing a million images would be megabytes).
    fn source_info(&self) -> Result<SourceInfo> {
        let hashed: Vec<Result<(u64, String)>> = self
            .paths
            .par_iter()
            .map(|p| {
                let (mut f, _) = crate::util::open_regular(p, crate::util::Links::Refuse)?;
                let mut h = Sha256::new();
                let n = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(p, e))?;
                Ok((n, hex(&h.finalize())))
            })
            .collect();
        let mut outer = Sha256::new();
        let mut total = 0u64;
        for (p, r) in self.paths.iter().zip(hashed) {
            let (n, sha) = r?;
            total += n;
            let rel = p.strip_prefix(&self.root).unwrap_or(p).to_string_lossy();
            outer.update(format!("{rel}\0{n}\0{sha}\n").as_bytes());
        }
        let fingerprint = hex(&outer.finalize());
        let name = self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(SourceInfo {
            files: vec![SourceFile { path: name, bytes: total, sha256: fingerprint.clone(), rows: self.rows() }],
            fingerprint,
        })
    }

    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let batch_size = batch_size.max(1);
        let mut next = (skip as usize) - (skip as usize) % batch_size;
        let mut failed = false;
        let width = self.shape.iter().product::<usize>();
        Box::new(std::iter::from_fn(move || {
            if failed || next >= self.paths.len() {
                return None;
            }
            let end = (next + batch_size).min(self.paths.len());
            let decoded: Vec<Result<Vec<u8>>> = (next..end).into_par_iter().map(|i| self.pixels(i)).collect();
            let mut values = Vec::with_capacity((end - next) * width);
            for d in decoded {
                match d {
                    Ok(px) => values.extend_from_slice(&px),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            let batch = Batch {
                file: self.root.clone(),
                first_row: next as u64,
                first_source_row: next as u64,
                ids: (next as u64..end as u64).collect(),
                labels: self.labels[next..end].iter().map(|&l| Some(l)).collect(),
                input: Arc::new(UInt8Array::from(values)) as ArrayRef,
                width,
                nonfinite: Vec::new(),
            };
            next = end;
            Some(Ok(batch))
        }))
    }
}
