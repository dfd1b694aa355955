//! Image folders in torchvision's ImageFolder layout: `DIR/<class>/.../<image>.png|jpg|jpeg`. Classes
//! are the subfolder names, sorted (label = position); ids are the positions of the images' relative
//! paths in byte order, so they are the same on every machine and run.
//!
//! Each image becomes a row as its [`ImagePrep`] says, fitted to the teacher's input shape
//! ([`Source::conform`]): decoded (PNG and JPEG, the `image` crate), converted to the teacher's channels
//! (1 grey, 3 RGB; alpha dropped), optionally resized (shorter side, antialiased bilinear as PIL's and
//! torchvision's `Resize`) and centre-cropped (zero-padded where smaller, as torchvision's `CenterCrop`) to
//! the teacher's height and width, laid out channels first or last as the teacher's shape says, and kept
//! as uint8 values 0-255 (as the Parquet path stores them) or normalised to float32
//! `(v * scale - mean[c]) / std[c]`. The prep is recorded in the manifest, so training, evaluation and
//! reports read the same folder into the same rows.
//!
//! The folder is untrusted: links are not followed, the walk is bounded in depth and files, a decoder
//! gets memory and size limits, and a corrupt or truncated image is an error naming its file. Batches
//! decode in parallel (rayon) on the reader thread, overlapping inference.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, UInt8Array};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Batch, DataSpec, ElementType, Source, SourceFile, SourceInfo};
use crate::error::{Error, Result};
use crate::util::hex;

/// Folder levels below a class folder walked at most.
const MAX_DEPTH: usize = 16;
/// Images read at most.
const MAX_IMAGES: usize = 50_000_000;
/// The largest labels CSV read (a path and a label per image).
const MAX_LABELS_CSV_BYTES: u64 = 4 << 30;
/// The largest image side decoded.
const MAX_SIDE: u32 = 16_384;
/// The most memory one decoder may allocate.
const MAX_DECODE_BYTES: u64 = 1 << 30;

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether text starting with `head` is a CSV listing images: a header with a `path` column, and a first
/// record whose path ends in .png, .jpg or .jpeg (quoted fields are unquoted; a comma inside one is not
/// looked for here, the CSV reader handles it).
pub fn lists_images(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let field = |s: &str| s.trim().trim_matches('"').to_string();
    let Some(header) = lines.next() else { return false };
    let Some(col) = header.split(',').map(field).position(|f| f == "path") else { return false };
    lines.next().and_then(|l| l.split(',').nth(col)).is_some_and(|p| is_image(Path::new(&field(p))))
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

/// What the user asks of images (`--resize`, `--scale`, `--mean`, `--std`, `--skip-bad-images`, or the
/// same `[data]` keys); the channels, size and layout come from the teacher's input shape.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageOptions {
    /// Resize the shorter side to this many pixels, then centre-crop to the teacher's height and width.
    pub resize: Option<u32>,
    /// Multiply pixel values (0-255) by this (e.g. 1/255) before `mean` and `std`.
    pub scale: Option<f64>,
    /// Subtracted per channel after `scale` (one value, or one per channel).
    pub mean: Option<Vec<f32>>,
    /// Divided per channel after `mean` (one value, or one per channel).
    pub std: Option<Vec<f32>>,
    /// Skip (and count) images that do not decode instead of failing on the first.
    pub skip_bad_images: bool,
}

impl ImageOptions {
    /// Checks the values (finite, positive sizes and deviations, at most 4 channels' worth).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.resize.is_some_and(|r| r == 0 || r > MAX_SIDE) {
            return bad(format!("--resize must be in 1..={MAX_SIDE}"));
        }
        if self.scale.is_some_and(|s| !s.is_finite() || s == 0.0) {
            return bad("--scale must be finite and not 0".into());
        }
        for (name, v) in [("--mean", &self.mean), ("--std", &self.std)] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 4 || v.iter().any(|x| !x.is_finite()) {
                    return bad(format!("{name} takes 1 to 4 finite values (one, or one per channel)"));
                }
            }
        }
        if self.std.as_ref().is_some_and(|v| v.iter().any(|&x| x <= 0.0)) {
            return bad("--std values must be > 0".into());
        }
        Ok(())
    }

    fn normalizes(&self) -> bool {
        self.scale.is_some() || self.mean.is_some() || self.std.is_some()
    }
}

/// Channels first (`[C, H, W]`, PyTorch) or last (`[H, W, C]`, TensorFlow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageLayout {
    /// `[C, H, W]`.
    Chw,
    /// `[H, W, C]`.
    Hwc,
}

/// Per-channel normalisation to float32: `(v * scale - mean[c]) / std[c]`, computed as torchvision's
/// `ToTensor` then `Normalize` do (the product in f64, rounded to f32; the rest in f32).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// The factor on the 0-255 values.
    pub scale: f64,
    /// One per channel.
    pub mean: Vec<f32>,
    /// One per channel.
    pub std: Vec<f32>,
}

/// How an image becomes an input row: recorded in the manifest (`input.image`) and in the student, so
/// every later reader of the same folder makes the same rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePrep {
    /// The shorter side is resized to this first (then centre-cropped to `size`); none: every image must
    /// already be `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<u32>,
    /// Height and width of a row.
    pub size: [usize; 2],
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Channels first or last.
    pub layout: ImageLayout,
    /// float32 values; none: uint8 0-255 as decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// Images that do not decode are skipped and counted (`skipped_nonfinite_rows`), not an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad_images: bool,
}

impl ImagePrep {
    /// Values per row.
    pub fn width(&self) -> usize {
        self.channels * self.size[0] * self.size[1]
    }

    /// The row shape: `[C, H, W]` or `[H, W, C]`.
    pub fn shape(&self) -> Vec<usize> {
        let [h, w] = self.size;
        match self.layout {
            ImageLayout::Chw => vec![self.channels, h, w],
            ImageLayout::Hwc => vec![h, w, self.channels],
        }
    }

    /// `options`' normalisation for `channels` channels (one value stands for every channel).
    fn normalize_of(options: &ImageOptions, channels: usize) -> Result<Option<Normalize>> {
        if !options.normalizes() {
            return Ok(None);
        }
        let per_channel = |v: &Option<Vec<f32>>, default: f32, name: &str| -> Result<Vec<f32>> {
            match v.as_deref() {
                None => Ok(vec![default; channels]),
                Some([one]) => Ok(vec![*one; channels]),
                Some(v) if v.len() == channels => Ok(v.to_vec()),
                Some(v) => Err(Error::Config(format!(
                    "{name} has {} values; the images have {channels} channel(s) (give one, or one per channel)",
                    v.len()
                ))),
            }
        };
        Ok(Some(Normalize {
            scale: options.scale.unwrap_or(1.0),
            mean: per_channel(&options.mean, 0.0, "--mean")?,
            std: per_channel(&options.std, 1.0, "--std")?,
        }))
    }
}

/// An image folder as input.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    paths: Vec<PathBuf>,
    labels: Vec<Option<i64>>,
    classes: Vec<String>,
    /// Whether labels and classes came from a labels CSV (named in errors and as the label column).
    labels_csv: Option<PathBuf>,
    /// The first image's height and width, as decoded.
    first_size: [usize; 2],
    options: ImageOptions,
    /// How rows are made.
    prep: ImagePrep,
    /// Whether `prep` was given (recorded by an earlier run), not derived: then [`Source::conform`]
    /// changes nothing.
    fixed: bool,
}

impl ImageFolder {
    /// Lists `root`'s class folders and images (sorted by relative path) and reads the first image's
    /// size. Rows are made as `spec.image_prep` says (recorded by an earlier run), else as the first
    /// image is until [`Source::conform`] fits them to a model.
    pub fn open(root: &Path, spec: &DataSpec) -> Result<Self> {
        spec.images.validate()?;
        // A folder of class folders, or a CSV listing images (in the CSV's folder) and their labels.
        let (list, root) = if root.is_dir() {
            (None, root.to_path_buf())
        } else {
            (Some(root.to_path_buf()), root.parent().map(Path::to_path_buf).unwrap_or_default())
        };
        let root = root.as_path();
        let (paths, labels, classes) = match &list {
            Some(csv) => listed(root, csv)?,
            None => class_folders(root)?,
        };
        // The first image that decodes (with --skip-bad-images, a corrupt first image is skipped later).
        let mut first = None;
        for p in &paths {
            match decode(p) {
                Ok(img) => {
                    first = Some(img);
                    break;
                }
                Err(e) if !spec.images.skip_bad_images => return Err(e),
                Err(_) => {}
            }
        }
        let first = first.ok_or_else(|| Error::data(root, "no image in the folder decodes"))?;
        let channels = if first.color().has_color() { 3 } else { 1 };
        let first_size = [first.height() as usize, first.width() as usize];
        let (prep, fixed) = match &spec.image_prep {
            Some(p) => (p.clone(), true),
            None => {
                let size = match spec.images.resize {
                    Some(s) => resized(first_size, s),
                    None => first_size,
                };
                let prep = ImagePrep {
                    resize: spec.images.resize,
                    size,
                    channels,
                    layout: ImageLayout::Chw,
                    // Checked against the teacher's channels by `conform` (a grey teacher of colour images).
                    normalize: ImagePrep::normalize_of(&spec.images, channels).ok().flatten(),
                    skip_bad_images: spec.images.skip_bad_images,
                };
                (prep, false)
            }
        };
        let folder = ImageFolder {
            root: root.to_path_buf(),
            files: vec![list.clone().unwrap_or_else(|| root.to_path_buf())],
            paths,
            labels,
            classes,
            labels_csv: list.clone(),
            first_size,
            options: spec.images.clone(),
            prep,
            fixed,
        };
        folder.check_prep()?;
        tracing::info!(images = folder.paths.len(), classes = folder.classes.len(), prep = ?folder.prep, "image folder");
        Ok(folder)
    }

    /// Checks the prep fits a row and the first image (without a resize, it must already have the size).
    fn check_prep(&self) -> Result<()> {
        let p = &self.prep;
        if p.size
            .iter()
            .chain([&p.channels])
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > crate::store::MAX_INPUT_VALUES)
        {
            return Err(Error::data(
                &self.paths[0],
                format!("is {:?} values, more than the {} a row may hold", p.shape(), crate::store::MAX_INPUT_VALUES),
            ));
        }
        if p.resize.is_none() && self.first_size != p.size {
            return Err(size_error(&self.paths[0], self.first_size, p.size));
        }
        Ok(())
    }

    /// Image `i`'s path relative to the folder, with `/` between its parts on every system.
    fn relative(&self, i: usize) -> String {
        let rel = self.paths[i].strip_prefix(&self.root).unwrap_or(&self.paths[i]);
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    /// The class names (subfolders), in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The row shape.
    pub fn shape(&self) -> Vec<usize> {
        self.prep.shape()
    }

    /// Image `i` as a row of uint8 values in the prep's channels, size and layout.
    fn pixels(&self, i: usize) -> Result<Vec<u8>> {
        Ok(self.views_of(i, |_, _| vec![CropBox::default()])?.1)
    }

    /// Image `i` once per box, rows of uint8 values in the prep's channels, size and layout: the
    /// prepared image for a zero box (view 0), else the box of the image (after its channel conversion)
    /// resized to the rows' size (antialiased bilinear, as `RandomResizedCrop`) and flipped as it says.
    /// The boxes are `boxes(width, height)` of the decoded image.
    fn views_of(&self, i: usize, boxes: impl FnOnce(u32, u32) -> Vec<CropBox>) -> Result<(Vec<CropBox>, Vec<u8>)> {
        let path = self.paths.get(i).ok_or_else(|| Error::Internal(format!("no image {i}")))?;
        let img = decode(path)?;
        let boxes = boxes(img.width(), img.height());
        let rows = if self.prep.channels == 1 {
            self.rows_of(path, grey(img), &boxes)?
        } else {
            self.rows_of(path, img.into_rgb8(), &boxes)?
        };
        Ok((boxes, rows))
    }

    fn rows_of<P: image::Pixel<Subpixel = u8> + 'static>(
        &self,
        path: &Path,
        img: image::ImageBuffer<P, Vec<u8>>,
        boxes: &[CropBox],
    ) -> Result<Vec<u8>> {
        let p = &self.prep;
        let (c, [h, w]) = (p.channels, p.size);
        let mut out = Vec::with_capacity(boxes.len() * c * h * w);
        // View 0 (the prepared image) takes the image itself when no other view needs it after.
        let mut img = Some(img);
        for (k, b) in boxes.iter().enumerate() {
            let last = k + 1 == boxes.len();
            let view = if b.w == 0 {
                let img = if last { img.take() } else { img.clone() };
                fit(path, img.ok_or_else(|| Error::Internal("image used up".into()))?, p.resize, p.size)?
            } else {
                let img = img.as_ref().ok_or_else(|| Error::Internal("image used up".into()))?;
                if b.x.checked_add(b.w).is_none_or(|r| r > img.width())
                    || b.y.checked_add(b.h).is_none_or(|r| r > img.height())
                {
                    return Err(Error::data(
                        path,
                        format!(
                            "is {}x{} (width x height); a view's crop {}x{} at ({}, {}) does not fit it",
                            img.width(),
                            img.height(),
                            b.w,
                            b.h,
                            b.x,
                            b.y
                        ),
                    ));
                }
                let cropped = image::imageops::crop_imm(img, b.x, b.y, b.w, b.h).to_image();
                let mut v = if (b.w as usize, b.h as usize) == (w, h) {
                    cropped
                } else {
                    image::imageops::resize(&cropped, w as u32, h as u32, image::imageops::FilterType::Triangle)
                };
                if b.flip {
                    image::imageops::flip_horizontal_in_place(&mut v);
                }
                v
            };
            let hwc = view.into_raw();
            if c == 1 || p.layout == ImageLayout::Hwc {
                out.extend_from_slice(&hwc);
                continue;
            }
            let start = out.len();
            out.resize(start + c * h * w, 0);
            for (q, px) in hwc.chunks_exact(c).enumerate() {
                for (k, v) in px.iter().enumerate() {
                    out[start + k * h * w + q] = *v;
                }
            }
        }
        Ok(out)
    }

    /// `values` (uint8 rows) as the prep's element type: as they are, or normalised to float32.
    pub fn values(&self, values: Vec<u8>) -> ArrayRef {
        let Some(n) = &self.prep.normalize else { return Arc::new(UInt8Array::from(values)) };
        let p = &self.prep;
        let plane = p.size[0] * p.size[1];
        let width = p.width();
        let channel = |j: usize| match p.layout {
            ImageLayout::Chw => j / plane,
            ImageLayout::Hwc => j % p.channels,
        };
        let out: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let c = channel(k % width);
                ((f64::from(v) * n.scale) as f32 - n.mean[c]) / n.std[c]
            })
            .collect();
        Arc::new(arrow_array::Float32Array::from(out))
    }
}

/// `img` as one channel: a grey image as it is (alpha dropped); a colour one by ITU-R 601-2 luma in
/// PIL's fixed point, `(299 R + 587 G + 114 B) / 1000` rounded (as `convert("L")` and torchvision's
/// `Grayscale` do; the `image` crate's own conversion weighs the channels by Rec. 709).
fn grey(img: image::DynamicImage) -> image::GrayImage {
    if !img.color().has_color() {
        return img.into_luma8();
    }
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    let luma = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    image::GrayImage::from_raw(w, h, luma).expect("one value per pixel")
}

/// Random-resized-crop views (Shen and Xing's FKD stores the same for ImageNet): view 0 is the prepared
/// image (`input.image`); view v >= 1 is the box [`Views::crop_box`] draws from (id, v, seed) in the
/// source image (after its channel conversion), resized to the rows' height and width and flipped
/// left-right when its flip is drawn.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropViews {
    /// The crop's area as a fraction of the image's, drawn uniformly from [min, max] (torchvision's
    /// `RandomResizedCrop` scale; 0.35-1 as FKD uses).
    pub scale: [f32; 2],
    /// Whether views are flipped left-right with probability 1/2.
    pub flip: bool,
}

/// One view's crop in the source image: `w` x `h` pixels from (`x`, `y`), then flipped when `flip`;
/// all zero for view 0 (the prepared image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CropBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width (0: view 0, the prepared image).
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Flipped left-right after the crop.
    pub flip: bool,
}

/// The crop of `view` of the row `id` in a source image of `width` x `height` pixels, as torchvision's
/// `RandomResizedCrop(scale = crop.scale, ratio = (3/4, 4/3))` draws it (SCHEMA.md gives the rule), from
/// the uniforms `u_j = (splitmix64(b + j) >> 11) / 2^53` with `b = splitmix64(splitmix64(id ^ seed) +
/// view)`: up to ten tries of an area and an aspect; the first box that fits is placed uniformly;
/// otherwise the whole image's centre, its aspect clamped to the range (torchvision's fallback). The
/// flip is `u_40 < 1/2` when flips are on. View 0 is the prepared image: a zero box.
pub fn crop_box(crop: &CropViews, seed: u64, id: u64, view: u16, width: u32, height: u32) -> CropBox {
    if view == 0 || width == 0 || height == 0 {
        return CropBox::default();
    }
    let base = crate::util::splitmix64(crate::util::splitmix64(id ^ seed).wrapping_add(u64::from(view)));
    let u = |j: u64| (crate::util::splitmix64(base.wrapping_add(j)) >> 11) as f64 / (1u64 << 53) as f64;
    let (wf, hf) = (f64::from(width), f64::from(height));
    let [lo, hi] = [f64::from(crop.scale[0]), f64::from(crop.scale[1])];
    let (lr, hr) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    let flip = crop.flip && u(40) < 0.5;
    for j in 0..10u64 {
        let area = wf * hf * (lo + (hi - lo) * u(4 * j));
        let aspect = (lr + (hr - lr) * u(4 * j + 1)).exp();
        let w = (area * aspect).sqrt().round();
        let h = (area / aspect).sqrt().round();
        if w > 0.0 && w <= wf && h > 0.0 && h <= hf {
            let x = (u(4 * j + 2) * (wf - w + 1.0)).floor().min(wf - w);
            let y = (u(4 * j + 3) * (hf - h + 1.0)).floor().min(hf - h);
            return CropBox { x: x as u32, y: y as u32, w: w as u32, h: h as u32, flip };
        }
    }
    let ratio = wf / hf;
    let (w, h) = if ratio < 3.0 / 4.0 {
        (wf, (wf / (3.0 / 4.0)).round())
    } else if ratio > 4.0 / 3.0 {
        ((hf * (4.0 / 3.0)).round(), hf)
    } else {
        (wf, hf)
    };
    let (w, h) = (w.clamp(1.0, wf), h.clamp(1.0, hf));
    CropBox { x: ((wf - w) / 2.0) as u32, y: ((hf - h) / 2.0) as u32, w: w as u32, h: h as u32, flip }
}

/// The size an image of `size` (height, width) has after its shorter side is resized to `s`, the longer
/// one in proportion, truncated (torchvision's `Resize(s)`).
fn resized(size: [usize; 2], s: u32) -> [usize; 2] {
    let [h, w] = size;
    let s = s as usize;
    if w <= h {
        [(s * h) / w.max(1), s]
    } else {
        [s, (s * w) / h.max(1)]
    }
}

/// `img` resized (shorter side to `resize`, antialiased bilinear: the `image` crate's triangle filter,
/// as PIL's BILINEAR) and centre-cropped to `size` (height, width), zero-padded where it is smaller, as
/// torchvision's `CenterCrop` does (offsets rounded half to even, as Python's `round`). Without a resize
/// the image must already have `size`.
fn fit<P: image::Pixel<Subpixel = u8> + 'static>(
    path: &Path,
    img: image::ImageBuffer<P, Vec<u8>>,
    resize: Option<u32>,
    size: [usize; 2],
) -> Result<image::ImageBuffer<P, Vec<u8>>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let Some(s) = resize else {
        if [h, w] != size {
            return Err(size_error(path, [h, w], size));
        }
        return Ok(img);
    };
    let [rh, rw] = resized([h, w], s);
    let img = if [rh, rw] == [h, w] {
        img
    } else {
        image::imageops::resize(&img, rw as u32, rh as u32, image::imageops::FilterType::Triangle)
    };
    let [ch, cw] = size;
    if [rh, rw] == [ch, cw] {
        return Ok(img);
    }
    // Padding where the crop is larger (left/top get the smaller half), then the crop's offset.
    let (pad_top, pad_left) = (ch.saturating_sub(rh) / 2, cw.saturating_sub(rw) / 2);
    let (ph, pw) = (rh.max(ch), rw.max(cw));
    let top = round_half_even((ph - ch) as f64 / 2.0);
    let left = round_half_even((pw - cw) as f64 / 2.0);
    let mut out = image::ImageBuffer::<P, Vec<u8>>::new(cw as u32, ch as u32);
    for y in 0..ch {
        for x in 0..cw {
            // Position in the padded image, then in the resized one.
            let (py, px) = (y + top, x + left);
            if py >= pad_top && py < pad_top + rh && px >= pad_left && px < pad_left + rw {
                out.put_pixel(x as u32, y as u32, *img.get_pixel((px - pad_left) as u32, (py - pad_top) as u32));
            }
        }
    }
    Ok(out)
}

/// An image of `found` (height, width) where rows of `size` are made without a resize.
fn size_error(path: &Path, found: [usize; 2], size: [usize; 2]) -> Error {
    Error::data(
        path,
        format!(
            "is {}x{} (height x width), the rows {}x{}: give --resize S to resize the shorter side to S and \
             centre-crop, as torchvision's Resize(S) + CenterCrop",
            found[0], found[1], size[0], size[1]
        ),
    )
}

/// Python's `round` (half to even), for offsets that are whole or halves.
fn round_half_even(v: f64) -> usize {
    let f = v.floor();
    let r = if v - f > 0.5 || (v - f == 0.5 && f % 2.0 != 0.0) { f + 1.0 } else { f };
    r as usize
}

/// Images (in id order), their labels and the class names.
type Listing = (Vec<PathBuf>, Vec<Option<i64>>, Vec<String>);

/// The images of `root`'s class subfolders in byte order of their relative paths, their labels (the
/// class folder's position) and the class names.
fn class_folders(root: &Path) -> Result<Listing> {
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
    let labels = found.iter().map(|f| Some(f.2)).collect();
    Ok((found.into_iter().map(|f| f.1).collect(), labels, classes))
}

/// The images a labels CSV lists (a header with `path` and `label` columns; paths relative to `root`,
/// inside it; labels integers, or class names numbered in sorted order; an empty label: unlabeled), in
/// byte order of their paths. Every path is checked: relative, no `..`, an image file (not a link) in
/// `root`, listed once.
fn listed(root: &Path, csv: &Path) -> Result<Listing> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let (file, len) = crate::util::open_regular(csv, crate::util::Links::Follow)?;
    if len > MAX_LABELS_CSV_BYTES {
        return Err(Error::data(csv, format!("is {len} bytes; a labels CSV is at most {MAX_LABELS_CSV_BYTES} bytes")));
    }
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (header, _) = format
        .infer_schema(std::io::BufReader::new(file.take(1 << 20)), Some(0))
        .map_err(|e| Error::data(csv, format!("cannot read the header row: {e}")))?;
    let names: Vec<String> = header.fields().iter().map(|f| f.name().clone()).collect();
    let index = |name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            Error::data(csv, format!("no column '{name}' (columns: {}): a CSV listing images has a path column and may have a label column", names.join(", ")))
        })
    };
    // Without a label column every image is unlabeled.
    let (pi, li) = (index("path")?, names.iter().position(|n| n == "label"));
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(
        names.iter().map(|n| arrow_schema::Field::new(n, arrow_schema::DataType::Utf8, true)).collect::<Vec<_>>(),
    ));
    let (file, _) = crate::util::open_regular(csv, crate::util::Links::Follow)?;
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_batch_size(8192)
        .build(std::io::BufReader::new(file))
        .map_err(|e| Error::data(csv, format!("cannot read: {e}")))?;
    let mut rows: Vec<(String, PathBuf, Option<String>, u64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut line = 1u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::data(csv, format!("after line {line}: {e}")))?;
        let p = batch.column(pi).as_string::<i32>();
        let l = li.map(|li| batch.column(li).as_string::<i32>());
        for r in 0..batch.num_rows() {
            line += 1;
            let at = |what: String| Error::data(csv, format!("line {line}, column 'path': {what}"));
            if p.is_null(r) || p.value(r).is_empty() {
                return Err(at("no path".into()));
            }
            let rel = p.value(r);
            let rp = Path::new(rel);
            if rp.is_absolute() || rp.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(at(format!(
                    "'{}' is not a plain relative path inside {}",
                    crate::util::clip(rel, 200),
                    root.display()
                )));
            }
            let full = root.join(rp);
            let meta =
                std::fs::symlink_metadata(&full).map_err(|e| at(format!("'{}': {e}", crate::util::clip(rel, 200))))?;
            if !meta.is_file() || !is_image(&full) {
                return Err(at(format!(
                    "'{}' is not a .png, .jpg or .jpeg file (links are not followed)",
                    crate::util::clip(rel, 200)
                )));
            }
            if !seen.insert(rel.to_string()) {
                return Err(at(format!("'{}' is listed twice", crate::util::clip(rel, 200))));
            }
            if rows.len() >= MAX_IMAGES {
                return Err(Error::data(csv, format!("lists more than {MAX_IMAGES} images")));
            }
            let label =
                l.filter(|l| !l.is_null(r) && !l.value(r).trim().is_empty()).map(|l| l.value(r).trim().to_string());
            rows.push((rel.to_string(), full, label, line));
        }
    }
    if rows.is_empty() {
        return Err(Error::data(csv, "lists no images"));
    }
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    // Integer labels stand as they are; otherwise every label is a class name, numbered in sorted order.
    let numeric = rows.iter().filter_map(|r| r.2.as_deref()).all(|l| l.parse::<i64>().is_ok());
    let classes: Vec<String> = if numeric {
        Vec::new()
    } else {
        let mut c: Vec<String> = rows.iter().filter_map(|r| r.2.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let mut labels = Vec::with_capacity(rows.len());
    for (_, _, label, line) in &rows {
        labels.push(match label {
            None => None,
            Some(l) if numeric => Some(l.parse::<i64>().map_err(|e| Error::Internal(e.to_string()))?),
            Some(l) => Some(classes.binary_search(l).map_err(|_| {
                Error::data(csv, format!("line {line}, column 'label': '{}' is not a class", crate::util::clip(l, 200)))
            })? as i64),
        });
    }
    Ok((rows.into_iter().map(|r| r.1).collect(), labels, classes))
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
        Some(if self.labels_csv.is_some() { "label" } else { "class folder" })
    }

    fn id_column(&self) -> Option<&str> {
        None
    }

    fn input_name(&self) -> String {
        "image".into()
    }

    fn width(&self) -> Option<usize> {
        Some(self.prep.width())
    }

    fn element_type(&self) -> ElementType {
        if self.prep.normalize.is_some() {
            ElementType::F32
        } else {
            ElementType::U8
        }
    }

    fn image_prep(&self) -> Option<ImagePrep> {
        Some(self.prep.clone())
    }

    fn view_renderer(&self) -> Option<Arc<dyn super::RenderViews>> {
        Some(Arc::new(self.clone()))
    }

    /// Takes the channels, height, width and layout of the model input `shape` (without the batch
    /// dimension): `[C, H, W]` or `[H, W, C]` with C 1 or 3, or `[H, W]` (grey); dynamic dimensions keep
    /// the images' own. Other shapes (a flat `[784]`, or none for imported outputs) keep the rows as
    /// they are. The normalisation is then checked against the channels.
    fn conform(&mut self, shape: &[i64]) -> Result<()> {
        if self.fixed {
            return Ok(());
        }
        let known = |d: i64, own: usize| if d > 0 { d as usize } else { own };
        let [h0, w0] = self.prep.size;
        let fitted = match *shape {
            [c, h, w] if c == 1 || c == 3 => Some((c as usize, [known(h, h0), known(w, w0)], ImageLayout::Chw)),
            [h, w, c] if c == 1 || c == 3 => Some((c as usize, [known(h, h0), known(w, w0)], ImageLayout::Hwc)),
            [h, w] if h != 1 && h != 3 => Some((1, [known(h, h0), known(w, w0)], ImageLayout::Chw)),
            _ => None,
        };
        if let Some((channels, size, layout)) = fitted {
            self.prep.channels = channels;
            self.prep.size = size;
            self.prep.layout = layout;
        }
        self.prep.normalize = ImagePrep::normalize_of(&self.options, self.prep.channels)?;
        self.check_prep()
    }

    fn class_names(&self) -> Option<Vec<String>> {
        (!self.classes.is_empty()).then(|| self.classes.clone())
    }

    /// sha256 over every image's relative path, size and sha256 (in id order), recorded as one entry
    /// for the folder (a manifest listing a million images would be megabytes).
    fn source_info_until(&self, stop: &std::sync::atomic::AtomicBool) -> Result<SourceInfo> {
        let hashed: Vec<Result<(u64, String)>> = self
            .paths
            .par_iter()
            .map(|p| {
                let (mut f, _) = crate::util::open_regular(p, crate::util::Links::Refuse)?;
                let mut h = Sha256::new();
                let n = super::hash_until(&mut f, &mut h, stop).map_err(|e| Error::io(p, e))?;
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
        let name = self.files[0].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(SourceInfo {
            files: vec![SourceFile { path: name, bytes: total, sha256: fingerprint.clone(), rows: self.rows() }],
            fingerprint,
        })
    }

    fn batches_from(&self, batch_size: usize, skip: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let batch_size = batch_size.max(1);
        let mut next = (skip as usize) - (skip as usize) % batch_size;
        let mut failed = false;
        let width = self.prep.width();
        Box::new(std::iter::from_fn(move || {
            if failed || next >= self.paths.len() {
                return None;
            }
            let end = (next + batch_size).min(self.paths.len());
            let decoded: Vec<Result<Vec<u8>>> = (next..end).into_par_iter().map(|i| self.pixels(i)).collect();
            let mut values = Vec::with_capacity((end - next) * width);
            let mut bad = Vec::new();
            for (k, d) in decoded.into_iter().enumerate() {
                match d {
                    Ok(px) => values.extend_from_slice(&px),
                    Err(e) if self.prep.skip_bad_images && matches!(e, Error::Data { .. }) => {
                        // A zero row stands in; the row is skipped and counted, never scored.
                        tracing::warn!("{e:#}: skipped (--skip-bad-images)");
                        values.resize(values.len() + width, 0);
                        bad.push(k);
                    }
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
                labels: self.labels[next..end].to_vec(),
                input: self.values(values),
                width,
                nonfinite: bad,
                extra: Vec::new(),
                paths: (next..end).map(|i| self.relative(i)).collect(),
                token_labels: Vec::new(),
            };
            next = end;
            Some(Ok(batch))
        }))
    }
}

impl super::RenderViews for ImageFolder {
    fn render(&self, row: u64, id: u64, count: u16, seed: u64, crop: &CropViews) -> Result<(Vec<CropBox>, ArrayRef)> {
        let (boxes, rows) =
            self.views_of(row as usize, |w, h| (0..count).map(|v| crop_box(crop, seed, id, v, w, h)).collect())?;
        Ok((boxes, self.values(rows)))
    }

    fn render_boxes(&self, row: u64, boxes: &[CropBox]) -> Result<ArrayRef> {
        Ok(self.values(self.views_of(row as usize, |_, _| boxes.to_vec())?.1))
    }
}
