//! Reading a soft-label dataset back, checking it against its manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt16Type;
use arrow_array::{Array, RecordBatch, RecordBatchReader};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use rayon::prelude::*;

use super::decode::Columns;
use super::pages::Chunk;
use super::{columns, Manifest, PartInfo, RowFilter, TeacherOutputs};
use crate::error::{Error, Result};
use crate::util::{guarded, Guarded, Links, ParquetFile};

/// An opened, checked soft-label dataset.
#[derive(Debug, Clone)]
pub struct SoftLabels {
    dir: PathBuf,
    manifest: Manifest,
    /// Each part's checked footer with its offset index, loaded when a block of the part is first read
    /// (see [`SoftLabels::block_metadata`]) and kept: every streamed epoch reads the same parts.
    footers: Vec<OnceLock<ArrowReaderMetadata>>,
}

impl SoftLabels {
    /// Opens `dir` and checks everything short of reading every value (which the readers check as they
    /// decode, and `verify` does in full): the manifest (bounded, sealed, consistent), every part (a
    /// regular file inside the folder, not a link; its size, sha256, footer metadata, row counts, column
    /// types and byte sizes against the manifest), and the ids (unique across parts, inside each part's
    /// recorded range) and label count. A part missing, truncated, swapped, linked in from elsewhere or
    /// crafted is refused here, before any work and before anything is sized from the manifest's claims.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let labels = SoftLabels::from_parts(dir, manifest);
        for part in &labels.manifest.parts {
            labels.check_part(part)?;
        }
        labels.check_ids()?;
        Ok(labels)
    }

    /// Checks one part's file against the manifest (see [`SoftLabels::open`]).
    fn check_part(&self, part: &PartInfo) -> Result<()> {
        let path = self.dir.join(&part.file);
        let file = ParquetFile::open(&path, Links::Refuse).map_err(|e| match e {
            Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                Error::dataset(&path, "part listed in _manifest.json is missing")
            }
            e => e,
        })?;
        if file.size() != part.bytes {
            return Err(Error::dataset(
                &path,
                format!(
                    "part was changed or replaced: it has {} bytes, _manifest.json says {}",
                    file.size(),
                    part.bytes
                ),
            ));
        }
        let sha = file.sha256(&path)?;
        if sha != part.sha256 {
            return Err(Error::dataset(
                &path,
                format!("part was changed or replaced: sha256 {sha}, _manifest.json says {}", part.sha256),
            ));
        }
        self.check_footer(part)
    }

    /// Checks one part's footer (column types, metadata, row counts, byte sizes) against the manifest.
    fn check_footer(&self, part: &PartInfo) -> Result<()> {
        let path = self.dir.join(&part.file);
        let builder = self.checked_builder(&path)?;
        check_footer(&path, builder.metadata(), part, &self.manifest)
    }

    /// The checks of [`SoftLabels::open`] that follow the hashes (every part's footer, then the ids and
    /// label count), for a dataset made with [`SoftLabels::from_parts`].
    pub fn check_contents(&self) -> Result<()> {
        for part in &self.manifest.parts {
            self.check_footer(part)?;
        }
        self.check_ids()
    }

    /// Reads every part's `id` (and `view`, `label`) column: ids unique (per view) across the whole
    /// dataset and inside each part's recorded range, and the labelled rows as many as the manifest says.
    fn check_ids(&self) -> Result<()> {
        let m = &self.manifest;
        let second = self.second_key();
        // (id, view or position) packed into one u128 sort key; memory is 16 bytes per row actually read.
        let mut keys: Vec<u128> = Vec::new();
        let mut labeled = 0u64;
        for part in &m.parts {
            let path = self.dir.join(&part.file);
            let mut names = vec![columns::ID, columns::LABEL];
            names.extend(second);
            let mut row = 0u64;
            for rb in self.projected_reader(&path, &names)? {
                let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode ids after row {row}: {e}")))?;
                let id = super::decode::id_values(&path, rb.column(0).as_ref(), row)?;
                if let Some(i) = id.iter().position(|&v| v < part.min_id || v > part.max_id) {
                    return Err(Error::dataset(
                        &path,
                        format!(
                            "column 'id', row {}: id {} outside the manifest's range {}..={} for this part",
                            row + i as u64,
                            id[i],
                            part.min_id,
                            part.max_id
                        ),
                    ));
                }
                labeled += (rb.num_rows() - rb.column(1).null_count()) as u64;
                match second {
                    Some(_) => {
                        let v = second_values(&path, rb.column(2).as_ref(), row, m)?;
                        keys.extend(id.iter().zip(v).map(|(&i, v)| (u128::from(i) << 16) | u128::from(v)));
                    }
                    None => keys.extend(id.iter().map(|&i| u128::from(i) << 16)),
                }
                row += rb.num_rows() as u64;
            }
        }
        if labeled != m.labeled_rows {
            return Err(Error::dataset(
                self.dir.join(super::MANIFEST),
                format!("labeled_rows is {}, the parts hold {labeled} rows with a label", m.labeled_rows),
            ));
        }
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            let (id, view) = ((w[0] >> 16) as u64, (w[0] & 0xffff) as u16);
            return Err(self.duplicate(id, view));
        }
        Ok(())
    }

    /// The column that tells an id's rows apart: `view` with views, `position` in a sequence dataset.
    fn second_key(&self) -> Option<&'static str> {
        if self.manifest.views.is_some() {
            Some(columns::VIEW)
        } else if self.manifest.sequence.is_some() {
            Some(columns::POSITION)
        } else {
            None
        }
    }

    /// The error for an id (and view) found twice, naming both places (a second scan: errors only).
    fn duplicate(&self, id: u64, view: u16) -> Error {
        let second = self.second_key();
        let mut places = Vec::new();
        for part in &self.manifest.parts {
            let path = self.dir.join(&part.file);
            let names: Vec<&str> = std::iter::once(columns::ID).chain(second).collect();
            let Ok(reader) = self.projected_reader(&path, &names) else { continue };
            let mut row = 0u64;
            for rb in reader.flatten() {
                let Ok(ids) = super::decode::id_values(&path, rb.column(0).as_ref(), row) else { continue };
                let seconds = match second {
                    Some(_) => second_values(&path, rb.column(1).as_ref(), row, &self.manifest).unwrap_or_default(),
                    None => vec![0; ids.len()],
                };
                for (i, &at) in ids.iter().enumerate() {
                    let v = seconds.get(i).copied().unwrap_or(u16::MAX);
                    if at == id && v == view {
                        places.push((path.clone(), row + i as u64));
                    }
                }
                row += rb.num_rows() as u64;
            }
        }
        let what = match second {
            Some(c) => format!("id {id} ({c} {view})"),
            None => format!("id {id}"),
        };
        match places.as_slice() {
            [(p1, r1), (p2, r2), ..] => Error::dataset(
                p2,
                format!("column 'id', row {r2}: duplicate {what}, also in {} row {r1}", p1.display()),
            ),
            _ => Error::dataset(&self.dir, format!("column 'id': duplicate {what}")),
        }
    }

    /// A reader of `names` (columns of the part schema, in that order) of the part at `path`.
    pub(super) fn projected_reader(&self, path: &Path, names: &[&str]) -> Result<Guarded<ParquetRecordBatchReader>> {
        let builder = self.checked_builder(path)?;
        let mask = projection(&builder, names, path)?;
        let reader = builder
            .with_projection(mask)
            .with_batch_size(8192)
            .build()
            .map_err(|error| Error::Parquet { path: path.to_path_buf(), error })?;
        // The projection keeps the file's column order; the callers index columns by `names`' order.
        let schema = reader.schema();
        let order: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        if order != names {
            return Err(Error::dataset(path, format!("columns are in the order {order:?}, the schema's is {names:?}")));
        }
        Ok(Guarded::new(reader))
    }

    /// A dataset from a manifest already checked by the caller (e.g. a resuming writer's committed parts).
    pub fn from_parts(dir: &Path, manifest: Manifest) -> Self {
        let footers = manifest.parts.iter().map(|_| OnceLock::new()).collect();
        SoftLabels { dir: dir.to_path_buf(), manifest, footers }
    }

    /// Every row's id, reading only the `id` column.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for part in &self.manifest.parts {
            let path = self.dir.join(&part.file);
            for rb in self.projected_reader(&path, &[columns::ID])? {
                let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode ids: {e}")))?;
                ids.extend(super::decode::id_values(&path, rb.column(0).as_ref(), 0)?);
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
        let path = self.dir.join(super::MANIFEST);
        let bytes = crate::util::read_bounded(&path, Links::Refuse, super::MAX_MANIFEST_BYTES, "a manifest")?;
        Ok(crate::util::sha256_hex(&bytes))
    }

    /// Reads every part into memory.
    pub fn load(&self) -> Result<TeacherOutputs> {
        self.load_filtered(&RowFilter::all())
    }

    /// Reads into memory the rows `filter` keeps, the others dropped as they are read.
    pub fn load_filtered(&self, filter: &RowFilter) -> Result<TeacherOutputs> {
        let m = &self.manifest;
        let mut acc = Columns::with_capacity(m, initial_rows(m.rows));
        for part in &m.parts {
            let path = self.dir.join(&part.file);
            let reader = self.projected_reader(&path, &decoded_columns(m))?;
            let mut part_rows = 0u64;
            for rb in reader {
                let rb =
                    rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {part_rows}: {e}")))?;
                let start = acc.len();
                acc.read(&path, &rb, m, part_rows)?;
                acc.retain_from(start, filter);
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

    /// Reads every part batch by batch, each decoded and checked as [`SoftLabels::load`] does, handing
    /// `visit` the part's path, the record batch (with the `soft` column too when `soft` is set: dense
    /// datasets only), the batch's first row in its part and its rows. Memory is one batch.
    pub fn scan(
        &self,
        soft: bool,
        mut visit: impl FnMut(&Path, &RecordBatch, u64, &TeacherOutputs) -> Result<()>,
    ) -> Result<u64> {
        let m = &self.manifest;
        let mut names: Vec<&str> = decoded_columns(m);
        if soft && m.form.is_dense() {
            // In schema order: `soft` follows `logits`.
            names.push(columns::SOFT);
        }
        if soft {
            // The full check (verify) reads the stored features too; they come last in the schema.
            names.extend(m.features.iter().map(|f| f.column.as_str()));
        }
        let mut total = 0u64;
        for part in &m.parts {
            let path = self.dir.join(&part.file);
            let mut row = 0u64;
            for rb in self.projected_reader(&path, &names)? {
                let rb = rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {row}: {e}")))?;
                let mut acc = Columns::with_capacity(m, rb.num_rows());
                acc.read(&path, &rb, m, row)?;
                visit(&path, &rb, row, &acc.finish(m)?)?;
                row += rb.num_rows() as u64;
            }
            if row != part.rows {
                return Err(Error::dataset(&path, format!("part has {row} rows, _manifest.json says {}", part.rows)));
            }
            total += row;
        }
        Ok(total)
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
        let rows = blocks.iter().map(|b| b.rows).sum::<usize>();
        let mut acc = Columns::with_capacity(&self.manifest, initial_rows(rows as u64));
        self.read_blocks(blocks, &RowFilter::all(), &mut acc)?;
        acc.finish(&self.manifest)
    }

    /// Streams the dataset in windows of `window` rows (the last may be shorter): `blocks` in the order
    /// given, rows `filter` does not keep dropped as they are read. Each window is read into memory
    /// sized for it, and only the rows of its last block that overflow it are carried to the next.
    pub fn windows<'a>(&'a self, blocks: &'a [Block], window: usize, filter: &'a RowFilter) -> Windows<'a> {
        Windows { labels: self, blocks, next: 0, window: window.max(1), filter, carry: None }
    }

    /// A part's footer with its offset index, which lets a block be read without decoding the pages
    /// before it; the part is checked once (byte ranges, column types).
    fn block_metadata(&self, path: &Path) -> Result<ArrowReaderMetadata> {
        self.checked_builder(path)?;
        let file = ParquetFile::open(path, Links::Refuse)?;
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        guarded(|| ArrowReaderMetadata::load(&file, options))
            .map_err(|msg| Error::dataset(path, format!("the footer decoder failed: {msg}")))?
            .map_err(|error| Error::Parquet { path: path.to_path_buf(), error })
    }

    /// Part `part`'s path and footer ([`SoftLabels::block_metadata`]), loaded once.
    fn cached_metadata(&self, part: usize) -> Result<(PathBuf, ArrowReaderMetadata)> {
        let (Some(info), Some(footer)) = (self.manifest.parts.get(part), self.footers.get(part)) else {
            return Err(Error::Internal("block of no part".into()));
        };
        let path = self.dir.join(&info.file);
        if let Some(meta) = footer.get() {
            return Ok((path, meta.clone()));
        }
        // Two threads may both load it; either's is the same footer.
        let meta = self.block_metadata(&path)?;
        Ok((path, footer.get_or_init(|| meta).clone()))
    }

    /// Reads `blocks` into `acc`.
    fn read_blocks(&self, blocks: &[Block], filter: &RowFilter, acc: &mut Columns) -> Result<()> {
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        let m = &self.manifest;
        for b in blocks {
            let (path, meta) = self.cached_metadata(b.part)?;
            let file = ParquetFile::open(&path, Links::Refuse)?;
            let selection = RowSelection::from(vec![RowSelector::skip(b.offset), RowSelector::select(b.rows)]);
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
            let mask = projection(&builder, &decoded_columns(m), &path)?;
            let reader = builder
                .with_projection(mask)
                .with_row_groups(vec![b.row_group])
                .with_row_selection(selection)
                .with_batch_size(8192)
                .build()
                .map_err(|error| Error::Parquet { path: path.clone(), error })?;
            let mut rows = 0usize;
            for rb in Guarded::new(reader) {
                let rb = rb.map_err(|e| {
                    Error::dataset(&path, format!("cannot decode row group {} rows {}..: {e}", b.row_group, b.offset))
                })?;
                let start = acc.len();
                acc.read(&path, &rb, m, b.first_row + rows as u64)?;
                acc.retain_from(start, filter);
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
    pub(crate) fn checked_builder(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<ParquetFile>> {
        let expected = self.manifest.part_schema();
        let builder = crate::data::open_parquet(path, Links::Refuse)?;
        for field in expected.fields() {
            match builder.schema().field_with_name(field.name()) {
                Ok(f) if same_type(f.data_type(), field.data_type()) => {}
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
        // A column the schema does not have (a later minor version's, or another tool's) is never
        // decoded: the readers project onto the schema's columns, so however it is compressed it costs
        // nothing (a highly compressed extra column is not a decompression bomb).
        Ok(builder)
    }
}

/// Windows of a streamed dataset (see [`SoftLabels::windows`]).
pub struct Windows<'a> {
    labels: &'a SoftLabels,
    blocks: &'a [Block],
    next: usize,
    window: usize,
    filter: &'a RowFilter,
    carry: Option<Columns>,
}

/// The fewest rows a piece of a block is cut to for decoding on another worker.
const MIN_PIECE_ROWS: usize = 512;

impl Windows<'_> {
    /// Reads `self.blocks[range]` into `acc`: cut into one piece per rayon worker (of at least
    /// [`MIN_PIECE_ROWS`]), decoded side by side and appended in order, so the rows are those a
    /// block-by-block read gives (on the trainer's workers, or on the threads that read ahead of it).
    fn read_pieces(&mut self, range: std::ops::Range<usize>, acc: &mut Columns) -> Result<()> {
        let blocks = &self.blocks[range];
        let rows: usize = blocks.iter().map(|b| b.rows).sum();
        let pieces = (rows / MIN_PIECE_ROWS).clamp(1, rayon::current_num_threads());
        if pieces == 1 {
            return self.labels.read_blocks(blocks, self.filter, acc);
        }
        // Each part's footer is loaded once, here; the pieces share it.
        for b in blocks {
            self.labels.cached_metadata(b.part)?;
        }
        let mut cut = Vec::with_capacity(pieces + blocks.len());
        let share = rows.div_ceil(pieces);
        for b in blocks {
            for start in (0..b.rows).step_by(share) {
                let n = share.min(b.rows - start);
                cut.push(Block { offset: b.offset + start, rows: n, first_row: b.first_row + start as u64, ..*b });
            }
        }
        let (m, labels, filter) = (&self.labels.manifest, self.labels, self.filter);
        let read: Vec<Result<Columns>> = cut
            .par_iter()
            .map(|piece| {
                let mut c = Columns::with_capacity(m, piece.rows);
                labels.read_blocks(std::slice::from_ref(piece), filter, &mut c)?;
                Ok(c)
            })
            .collect();
        for c in read {
            acc.extend(c?);
        }
        Ok(())
    }
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
            // The blocks that fill the window if the filter keeps every row; it reads more if not.
            let (mut end, mut want) = (self.next, self.window - acc.len());
            while end < self.blocks.len() && want > 0 {
                want = want.saturating_sub(self.blocks[end].rows);
                end += 1;
            }
            let read = self.read_pieces(self.next..end, &mut acc);
            self.next = if read.is_err() { self.blocks.len() } else { end };
            if let Err(e) = read {
                return Some(Err(e));
            }
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

/// Whether a part column's type is the schema's: equal, except that a list's item field may have any
/// name (pyarrow writes `element`, softlabel `item`).
fn same_type(a: &arrow_schema::DataType, b: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType::FixedSizeList;
    match (a, b) {
        (FixedSizeList(fa, na), FixedSizeList(fb, nb)) => na == nb && same_type(fa.data_type(), fb.data_type()),
        _ => a == b,
    }
}

/// The columns the readers decode: the part schema's, minus `soft` (recomputed from `logits` where it
/// is needed). A column the schema does not name is never decoded, however it is compressed.
fn decoded_columns(m: &Manifest) -> Vec<&'static str> {
    m.part_schema()
        .fields()
        .iter()
        .filter_map(|f| columns::ALL.iter().copied().find(|&c| c == f.name() && c != columns::SOFT))
        .collect()
}

/// A projection onto the top-level columns `names`.
fn projection<T>(
    builder: &parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
    names: &[&str],
    path: &Path,
) -> Result<ProjectionMask> {
    let roots = builder.parquet_schema().root_schema().get_fields();
    let mut indices = Vec::with_capacity(names.len());
    for name in names {
        let i = roots
            .iter()
            .position(|f| f.name() == *name)
            .ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
        indices.push(i);
    }
    Ok(ProjectionMask::roots(builder.parquet_schema(), indices))
}

/// Rows to reserve room for up front: the claim, but never more than a few million rows (the vectors
/// grow with what is really decoded, so a manifest claiming 2^40 rows allocates nothing for it).
fn initial_rows(claimed: u64) -> usize {
    claimed.min(1 << 20) as usize
}

/// Bytes one value of a Parquet leaf column takes in its plain encoding.
fn physical_bytes(c: &parquet::schema::types::ColumnDescriptor) -> usize {
    use parquet::basic::Type;
    match c.physical_type() {
        Type::BOOLEAN => 1,
        Type::INT32 | Type::FLOAT => 4,
        Type::INT64 | Type::DOUBLE => 8,
        Type::INT96 => 12,
        Type::FIXED_LEN_BYTE_ARRAY => c.type_length().max(0) as usize,
        // Not a type softlabel writes; checked_builder refuses such a part before this is used.
        Type::BYTE_ARRAY => 0,
    }
}

/// Bytes a column may claim uncompressed beyond its values' own size (levels, page headers, a
/// dictionary): twice the values plus this much.
const CHUNK_SLACK_BYTES: i64 = 1 << 20;

/// Checks a part's footer against the manifest: the metadata every part carries, the row count, and
/// the uncompressed size each decoded column claims against what its rows can hold (so a column cannot
/// decompress to more than its rows' values: a crafted part is refused before it is decoded).
fn check_footer(path: &Path, meta: &ParquetMetaData, part: &PartInfo, m: &Manifest) -> Result<()> {
    let kv: HashMap<&str, &str> = meta
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
    let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
    if rows < 0 || rows as u64 != part.rows {
        return Err(Error::dataset(path, format!("part has {rows} rows, {} says {}", super::MANIFEST, part.rows)));
    }
    let schema = m.part_schema();
    let file = ParquetFile::open(path, Links::Refuse)?;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let name = c.column_path().parts().first().map(String::as_str).unwrap_or("");
            // Only the columns the readers decode are bounded (`path` never is; features by verify).
            if !columns::ALL.contains(&name) && !m.features.iter().any(|f| f.column == name) {
                continue;
            }
            let Ok(field) = schema.field_with_name(name) else { continue };
            let values = (super::list_width(field.data_type()) * physical_bytes(c.column_descr())) as i64;
            let limit = rg.num_rows().saturating_mul(values).saturating_mul(2).saturating_add(CHUNK_SLACK_BYTES);
            // The footer's byte ranges were checked against the file by `data::open_parquet`.
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()).max(0) as u64;
            let chunk = Chunk {
                column: name,
                row_group: g,
                start,
                len: c.compressed_size().max(0) as u64,
                max_uncompressed: limit,
            };
            super::pages::check_chunk(&file, path, &chunk)?;
            if c.uncompressed_size() > limit {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{name}' in row group {g} claims {} bytes uncompressed for {} rows of {values} bytes \
                         (a crafted or damaged part)",
                        c.uncompressed_size(),
                        rg.num_rows()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The values of the `view` (uint16) or `position` (uint32, below the sequence's length, so below 2^16)
/// column as 16-bit keys.
fn second_values(path: &Path, col: &dyn Array, first_row: u64, m: &Manifest) -> Result<Vec<u16>> {
    if let Some(v) = col.as_primitive_opt::<UInt16Type>() {
        return Ok(v.values().to_vec());
    }
    let v = col
        .as_primitive_opt::<arrow_array::types::UInt32Type>()
        .ok_or_else(|| Error::dataset(path, format!("column '{}' is not uint32", columns::POSITION)))?;
    let length = m.sequence.as_ref().map_or(0, |s| s.length);
    v.values()
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if (p as usize) < length {
                Ok(p as u16)
            } else {
                Err(Error::dataset(
                    path,
                    format!(
                        "column '{}', row {}: position {p} is outside the sequence's {length} positions",
                        columns::POSITION,
                        first_row + i as u64
                    ),
                ))
            }
        })
        .collect()
}
