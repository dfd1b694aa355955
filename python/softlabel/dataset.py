"""Opening a soft-label dataset: the manifest checked (format, schema version, checksum, part names),
the parts read with pyarrow in the manifest's order, the columns as numpy arrays."""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FORMAT = "softlabel"
#: The schema major versions this reader reads: 1.x (uint64 ids) and 2.x (int64 ids).
SCHEMA_MAJORS = (1, 2)
#: The largest manifest read (bytes), as softlabel itself bounds it.
MAX_MANIFEST_BYTES = 64 << 20


class SchemaError(ValueError):
    """A dataset that is not a softlabel dataset this reader can read, or whose files do not match its
    manifest. The message names the file."""


def checksum_of(manifest: dict) -> str:
    """sha256 of the manifest's JSON with `checksum` empty, keys sorted, no spaces (SCHEMA.md)."""
    text = json.dumps(manifest | {"checksum": ""}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _filesystem(path: str, filesystem: Optional[pafs.FileSystem]) -> Tuple[pafs.FileSystem, str]:
    if filesystem is not None:
        return filesystem, path
    return pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)


@dataclass
class TopK:
    """Top-k soft labels at the stored temperature: the k classes (largest first), the teacher's
    exact p_T of each (float64), and the residual mass 1 - sum on the other classes (never negative)."""

    index: np.ndarray
    p: np.ndarray
    residual: np.ndarray
    #: Each row's exact p_T of its label, float64 (NaN without a label), when the dataset stores the
    #: label's logit (`label_logit`, schema 2.11); None otherwise.
    label_p: Optional[np.ndarray] = None


class SoftLabels:
    """An opened soft-label dataset. Rows come in the stored order: parts in the manifest's order, rows
    in part order (the order `softlabel loss` takes logits in)."""

    def __init__(self, path: str, filesystem: Optional[pafs.FileSystem] = None, verify_parts: bool = True):
        self.fs, self.path = _filesystem(str(path), filesystem)
        manifest_path = posixpath.join(self.path, "_manifest.json")
        try:
            info = self.fs.get_file_info(manifest_path)
        except OSError as e:
            raise SchemaError(f"{manifest_path}: cannot be read ({e})") from e
        if info.type != pafs.FileType.File:
            raise SchemaError(f"{manifest_path}: no manifest (an unfinished or not a softlabel dataset)")
        if info.size > MAX_MANIFEST_BYTES:
            raise SchemaError(f"{manifest_path}: {info.size} bytes, more than a manifest may hold")
        with self.fs.open_input_stream(manifest_path) as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
        try:
            m = json.loads(text)
        except ValueError as e:
            raise SchemaError(f"{manifest_path}: not valid JSON ({e})") from e
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise SchemaError(f"{manifest_path}: field 'format' is not \"{FORMAT}\"")
        version = str(m.get("schema_version", ""))
        major = version.split(".")[0]
        if not major.isdigit() or int(major) not in SCHEMA_MAJORS:
            raise SchemaError(f"{manifest_path}: schema version '{version}': this reader reads 1.x and 2.x")
        if m.get("checksum") != checksum_of(m):
            raise SchemaError(f"{manifest_path}: checksum does not match the content (edited or damaged)")
        self.manifest = m
        self.parts = []
        for part in m["parts"]:
            name = part["file"]
            # A manifest names files inside its own folder only.
            if "/" in name or "\\" in name or name in (".", "..") or not name.endswith(".parquet"):
                raise SchemaError(f"{manifest_path}: part name {name!r} is not a file of the dataset's folder")
            full = posixpath.join(self.path, name)
            size = self.fs.get_file_info(full).size
            if size != part["bytes"]:
                raise SchemaError(f"{full}: {size} bytes, the manifest says {part['bytes']}")
            if verify_parts:
                h = hashlib.sha256()
                with self.fs.open_input_stream(full) as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if h.hexdigest() != part["sha256"]:
                    raise SchemaError(f"{full}: sha256 does not match the manifest")
            self.parts.append(full)
        self._table: Optional[pa.Table] = None

    # --- what the manifest says
    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def temperature(self) -> float:
        return float(self.manifest["temperature"])

    @property
    def form(self) -> str:
        """'dense', 'top-k' or 'sampled'."""
        return self.manifest.get("form", {"kind": "dense"})["kind"]

    @property
    def class_names(self) -> Optional[Sequence[str]]:
        return self.manifest.get("class_names")

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    # --- columns
    def table(self) -> pa.Table:
        """Every part, in order, as one Arrow table."""
        if self._table is None:
            tables = [pq.read_table(p, filesystem=self.fs) for p in self.parts]
            self._table = pa.concat_tables(tables) if tables else pa.table({})
            if self._table.num_rows != len(self):
                raise SchemaError(f"{self.path}: parts hold {self._table.num_rows} rows, the manifest says {len(self)}")
        return self._table

    def _list(self, name: str, dtype=None) -> np.ndarray:
        col = self.table().column(name).combine_chunks()
        width = col.type.list_size
        values = col.values.to_numpy(zero_copy_only=False)
        out = values.reshape(len(col), width)
        return out.astype(dtype) if dtype is not None else out

    def ids(self) -> np.ndarray:
        return self.table().column("id").to_numpy()

    def labels(self) -> np.ndarray:
        """Hard labels as int64, -1 where a row is unlabeled."""
        return self.table().column("label").fill_null(-1).to_numpy().astype(np.int64)

    def inputs(self) -> np.ndarray:
        """The stored inputs, `[rows, *shape]` in their stored element type (absent with --no-inputs:
        join your own by id, see `softlabel.torch.SoftLabelDataset`)."""
        if not self.manifest["input"].get("stored", True):
            raise SchemaError(f"{self.path}: made with --no-inputs: the inputs are not stored; join them by id")
        shape = self.manifest["input"]["shape"]
        return self._list("input").reshape(len(self), *shape)

    def logits(self) -> np.ndarray:
        """Dense teacher logits, float32 `[rows, K]` (float16 datasets are widened)."""
        self._need("dense")
        return self._list("logits", np.float32)

    def soft(self, temperature: Optional[float] = None) -> np.ndarray:
        """Dense soft labels softmax(logits / T) at any T (default: the stored one), float32, computed as
        softlabel stores them (in float64, rounded to float32)."""
        self._need("dense")
        return softmax_t(self.logits(), temperature or self.temperature).astype(np.float32)

    def topk(self) -> TopK:
        """Top-k labels: classes, exact p_T (stored T only) and the residual mass."""
        self._need("top-k")
        index = self._list("topk_index", np.int64)
        logit = self._list("topk_logit", np.float64)
        lse = self.table().column("logsumexp_t").to_numpy()
        p = np.exp(logit / self.temperature - lse[:, None])
        label_p = None
        if self.manifest.get("label_logit"):
            z = self.table().column("label_logit").to_numpy(zero_copy_only=False).astype(np.float64)
            label_p = np.exp(z / self.temperature - lse)
        return TopK(index, p, np.maximum(1.0 - p.sum(axis=1), 0.0), label_p)

    def sampled(self) -> np.ndarray:
        """Sampled labels: k classes drawn from p_T per row, int64 `[rows, k]`."""
        self._need("sampled")
        return self._list("sample_index", np.int64)

    def features(self, name: str) -> np.ndarray:
        """A stored teacher feature (`precompute --features NAME`), float32 `[rows, width]`: pooled and
        projected as the manifest's `features` entry says."""
        names = [f["name"] for f in self.manifest.get("features", [])]
        if name not in names:
            raise SchemaError(f"{self.path}: no feature '{name}' (stored: {', '.join(names) or 'none'})")
        return self._list("feature." + name, np.float32)

    @property
    def sequence(self) -> Optional[dict]:
        """A sequence teacher's dataset (schema 2.12): `{length, targets, pad_id?, mask_input?,
        vocab_sha256?}`; each row is one unmasked position of the sequence `id`. None otherwise."""
        return self.manifest.get("sequence")

    def positions(self) -> np.ndarray:
        """Each row's position in its sequence (uint32), for a sequence dataset. The rows of one id are
        contiguous with positions ascending; masked (padding) positions are not stored."""
        if self.sequence is None:
            raise SchemaError(f"{self.path}: not a sequence dataset (no positions)")
        return self.table().column("position").to_numpy()

    def views(self) -> Optional[dict]:
        """The view columns of a dataset with views (`view` and the shifts or crop boxes), else None."""
        if self.manifest.get("views") is None:
            return None
        t = self.table()
        names = [n for n in ("view", "shift_x", "shift_y", "crop_x", "crop_y", "crop_w", "crop_h", "flip")
                 if n in t.column_names]
        return {n: t.column(n).to_numpy() for n in names}

    def _need(self, form: str) -> None:
        if self.form != form:
            raise SchemaError(f"{self.path}: holds {self.form} labels, not {form}")


def open_dataset(path: Union[str, "os.PathLike"], filesystem: Optional[pafs.FileSystem] = None,
                 verify_parts: bool = True) -> SoftLabels:
    """Opens the dataset at `path` (a folder, or a URL pyarrow opens: s3://bucket/prefix, ...), checking
    its manifest and, with `verify_parts`, every part's sha256."""
    return SoftLabels(str(path), filesystem, verify_parts)


def logsumexp_t(logits: np.ndarray, t: float) -> np.ndarray:
    """logsumexp(logits / t) per row, in float64 (as softlabel computes it)."""
    z = np.asarray(logits, dtype=np.float64) / float(t)
    m = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        out = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return np.where(np.isfinite(m[:, 0]), out, m[:, 0])


def softmax_t(logits: np.ndarray, t: float) -> np.ndarray:
    """softmax(logits / t) per row, float64."""
    z = np.asarray(logits, dtype=np.float64) / float(t)
    return np.exp(z - logsumexp_t(logits, t)[:, None])
