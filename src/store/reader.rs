//! Reading a soft-label dataset back, checking it against its manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use super::decode::Columns;
use super::{columns, Manifest, TeacherOutputs};
use crate::error::{Error, Result};
use crate::util::sha256_file;

/// An opened, checked soft-label dataset.
#[derive(Debug, Clone)]
pub struct SoftLabels {
    dir: PathBuf,
    manifest: Manifest,
}

impl SoftLabels {
    /// Opens `dir`: reads the manifest and checks that every part exists with the recorded size and
    /// sha256, so a missing, truncated or swapped part is caught before any work.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        for part in &manifest.parts {
            let path = dir.join(&part.file);
            let meta = std::fs::metadata(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::dataset(&path, "part listed in _manifest.json is missing")
                } else {
                    Error::io(&path, e)
                }
            })?;
            if meta.len() != part.bytes {
                return Err(Error::dataset(
                    &path,
                    format!(
                        "part was changed or replaced: it has {} bytes, _manifest.json says {}",
                        meta.len(),
                        part.bytes
                    ),
                ));
            }
            check_footer(&path, &manifest)?;
            let sha = sha256_file(&path)?;
            if sha != part.sha256 {
                return Err(Error::dataset(
                    &path,
                    format!("part was changed or replaced: sha256 {sha}, _manifest.json says {}", part.sha256),
                ));
            }
        }
        Ok(SoftLabels { dir: dir.to_path_buf(), manifest })
    }

    /// A dataset from a manifest already checked by the caller (e.g. a resuming writer's committed parts).
    pub fn from_parts(dir: &Path, manifest: Manifest) -> Self {
        SoftLabels { dir: dir.to_path_buf(), manifest }
    }

    /// Every row's id, reading only the `id` column.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::with_capacity(self.manifest.rows as usize);
        for part in &self.manifest.parts {
            let path = self.dir.join(&part.file);
            let builder = crate::data::open_parquet(&path)?;
            let idx = builder
                .schema()
                .index_of(columns::ID)
                .map_err(|_| Error::dataset(&path, format!("no column '{}'", columns::ID)))?;
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
            let reader =
                builder.with_projection(mask).build().map_err(|error| Error::Parquet { path: path.clone(), error })?;
            for rb in reader {
                let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode ids: {e}")))?;
                let col = rb
                    .column(0)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| Error::dataset(&path, "column 'id' is not uint64"))?;
                ids.extend_from_slice(col.values());
            }
        }
        Ok(ids)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// sha256 of _manifest.json's content (identifies exactly what a student learned from).
    pub fn manifest_sha256(&self) -> Result<String> {
        sha256_file(&self.dir.join(super::MANIFEST))
    }

    /// Reads every part into memory.
    pub fn load(&self) -> Result<TeacherOutputs> {
        self.load_excluding(&[])
    }

    /// Reads every part into memory except the rows whose hard label is in `exclude`, dropped as they
    /// are read.
    pub fn load_excluding(&self, exclude: &[i64]) -> Result<TeacherOutputs> {
        let m = &self.manifest;
        let mut acc = Columns::with_capacity(m, m.rows as usize);
        for part in &m.parts {
            let path = self.dir.join(&part.file);
            let builder = self.checked_builder(&path)?;
            let reader =
                builder.with_batch_size(8192).build().map_err(|error| Error::Parquet { path: path.clone(), error })?;
            let mut part_rows = 0u64;
            for rb in reader {
                let rb =
                    rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {part_rows}: {e}")))?;
                let start = acc.len();
                acc.read(&path, &rb, m, part_rows)?;
                acc.exclude_labels_from(start, exclude);
                part_rows += rb.num_rows() as u64;
            }
            if part_rows != part.rows {
                return Err(Error::dataset(
                    &path,
                    format!("part has {part_rows} rows, _manifest.json says {}", part.rows),
                ));
            }
        }
        acc.finish(m)
    }

    /// The dataset cut into blocks of at most `max_rows` rows, none crossing a row group, in file order.
    /// Reading a block decodes only the pages it touches, so blocks can be read in any order.
    pub fn blocks(&self, max_rows: usize) -> Result<Vec<Block>> {
        let max_rows = max_rows.max(1);
        let mut out = Vec::new();
        for (p, part) in self.manifest.parts.iter().enumerate() {
            let path = self.dir.join(&part.file);
            let builder = self.checked_builder(&path)?;
            let mut total = 0u64;
            for (g, rg) in builder.metadata().row_groups().iter().enumerate() {
                let rows = rg.num_rows() as usize;
                for offset in (0..rows).step_by(max_rows) {
                    let first_row = total + offset as u64;
                    out.push(Block { part: p, row_group: g, offset, rows: max_rows.min(rows - offset), first_row });
                }
                total += rows as u64;
            }
            if total != part.rows {
                return Err(Error::dataset(&path, format!("part has {total} rows, _manifest.json says {}", part.rows)));
            }
        }
        Ok(out)
    }

    /// Reads `blocks` (from [`SoftLabels::blocks`]) into memory, in the order given.
    pub fn load_blocks(&self, blocks: &[Block]) -> Result<TeacherOutputs> {
        let rows = blocks.iter().map(|b| b.rows).sum();
        let mut acc = Columns::with_capacity(&self.manifest, rows);
        self.read_blocks(blocks, &[], &mut acc, &mut Vec::new())?;
        acc.finish(&self.manifest)
    }

    /// Streams the dataset in windows of `window` rows (the last may be shorter): `blocks` in the order
    /// given, rows whose label is in `exclude` dropped as they are read. Each window is read into memory
    /// sized for it, and only the rows of its last block that overflow it are carried to the next.
    pub fn windows<'a>(&'a self, blocks: &'a [Block], window: usize, exclude: &'a [i64]) -> Windows<'a> {
        Windows { labels: self, blocks, next: 0, window: window.max(1), exclude, carry: None, metas: Vec::new() }
    }

    /// A part's footer with its offset index, which lets a block be read without decoding the pages
    /// before it; the part is checked once (byte ranges, column types).
    fn block_metadata(&self, path: &Path) -> Result<ArrowReaderMetadata> {
        self.checked_builder(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        ArrowReaderMetadata::load(&file, options).map_err(|error| Error::Parquet { path: path.to_path_buf(), error })
    }

    /// Reads `blocks` into `acc`; `metas` caches each part's footer.
    fn read_blocks(
        &self,
        blocks: &[Block],
        exclude: &[i64],
        acc: &mut Columns,
        metas: &mut Vec<Option<ArrowReaderMetadata>>,
    ) -> Result<()> {
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        let m = &self.manifest;
        metas.resize(m.parts.len(), None);
        for b in blocks {
            let part = m.parts.get(b.part).ok_or_else(|| Error::Internal("block of no part".into()))?;
            let path = self.dir.join(&part.file);
            let meta = match &metas[b.part] {
                Some(meta) => meta.clone(),
                None => {
                    let meta = self.block_metadata(&path)?;
                    metas[b.part] = Some(meta.clone());
                    meta
                }
            };
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let selection = RowSelection::from(vec![RowSelector::skip(b.offset), RowSelector::select(b.rows)]);
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
                .with_row_groups(vec![b.row_group])
                .with_row_selection(selection)
                .with_batch_size(8192)
                .build()
                .map_err(|error| Error::Parquet { path: path.clone(), error })?;
            let mut rows = 0usize;
            for rb in reader {
                let rb = rb.map_err(|e| {
                    Error::dataset(&path, format!("cannot decode row group {} rows {}..: {e}", b.row_group, b.offset))
                })?;
                let start = acc.len();
                acc.read(&path, &rb, m, b.first_row + rows as u64)?;
                acc.exclude_labels_from(start, exclude);
                rows += rb.num_rows();
            }
            if rows != b.rows {
                return Err(Error::dataset(
                    &path,
                    format!("row group {} has fewer rows than its metadata says", b.row_group),
                ));
            }
        }
        Ok(())
    }

    /// Opens a part, checking its columns have the types the manifest implies.
    fn checked_builder(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
        let m = &self.manifest;
        let expected = super::part_schema(
            m.input.dtype,
            m.input.stored.then_some(m.input.width),
            m.num_classes,
            m.form,
            m.float16,
            m.views.is_some(),
        );
        let builder = crate::data::open_parquet(path)?;
        for field in expected.fields() {
            match builder.schema().field_with_name(field.name()) {
                Ok(f) if f.data_type() == field.data_type() => {}
                Ok(f) => {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "column '{}' has type {}, manifest implies {}",
                            f.name(),
                            f.data_type(),
                            field.data_type()
                        ),
                    ))
                }
                Err(_) => return Err(Error::dataset(path, format!("no column '{}'", field.name()))),
            }
        }
        Ok(builder)
    }
}

/// Windows of a streamed dataset (see [`SoftLabels::windows`]).
pub struct Windows<'a> {
    labels: &'a SoftLabels,
    blocks: &'a [Block],
    next: usize,
    window: usize,
    exclude: &'a [i64],
    carry: Option<Columns>,
    metas: Vec<Option<ArrowReaderMetadata>>,
}

impl Iterator for Windows<'_> {
    type Item = Result<TeacherOutputs>;

    fn next(&mut self) -> Option<Self::Item> {
        let m = &self.labels.manifest;
        let carried = self.carry.as_ref().map_or(0, Columns::len);
        if carried == 0 && self.next >= self.blocks.len() {
            return None;
        }
        let mut acc = Columns::with_capacity(m, self.window);
        if let Some(c) = self.carry.take() {
            acc.extend(c);
        }
        while acc.len() < self.window && self.next < self.blocks.len() {
            let block = &self.blocks[self.next..self.next + 1];
            if let Err(e) = self.labels.read_blocks(block, self.exclude, &mut acc, &mut self.metas) {
                self.next = self.blocks.len();
                return Some(Err(e));
            }
            self.next += 1;
        }
        if acc.len() > self.window {
            self.carry = Some(acc.split_off(self.window, m));
        }
        if acc.len() == 0 {
            return None;
        }
        Some(acc.finish(m))
    }
}

/// A run of rows inside one row group of one part (see [`SoftLabels::blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Index of the part in the manifest.
    pub part: usize,
    /// Row group in that part.
    pub row_group: usize,
    /// First row inside the row group.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Its first row's position in the part (named in errors).
    pub first_row: u64,
}

fn check_footer(path: &Path, m: &Manifest) -> Result<()> {
    let builder = crate::data::open_parquet(path)?;
    let kv: HashMap<&str, &str> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().filter_map(|e| e.value.as_deref().map(|v| (e.key.as_str(), v))).collect())
        .unwrap_or_default();
    let get = |key: &str| {
        kv.get(key).copied().ok_or_else(|| Error::dataset(path, format!("part lacks metadata key '{key}'")))
    };
    let sha = get("softlabel.teacher_sha256")?;
    if sha != m.teacher.sha256 {
        return Err(Error::dataset(
            path,
            format!("part was made by teacher sha256 {sha}, {} says {}", super::MANIFEST, m.teacher.sha256),
        ));
    }
    let t: f32 = get("softlabel.temperature")?
        .parse()
        .map_err(|_| Error::dataset(path, "softlabel.temperature is not a number"))?;
    if t != m.temperature {
        return Err(Error::dataset(
            path,
            format!("part was made at temperature {t}, {} says {}", super::MANIFEST, m.temperature),
        ));
    }
    let k: usize = get("softlabel.num_classes")?
        .parse()
        .map_err(|_| Error::dataset(path, "softlabel.num_classes is not a number"))?;
    if k != m.num_classes {
        return Err(Error::dataset(path, format!("part has {k} classes, {} says {}", super::MANIFEST, m.num_classes)));
    }
    Ok(())
}
