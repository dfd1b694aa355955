"""The soft-label files as another team sees them: real MNIST through the shipped teacher, written by
the softlabel binary, read back with pyarrow and checked against numpy and Python onnxruntime.

Run by `make test` (SOFTLABEL_BIN points at the release binary)."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
TEST = ROOT / "data" / "mnist" / "test.parquet"
T = 4.0


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    out = tmp_path_factory.mktemp("sl") / "mnist-test"
    subprocess.run(
        [BIN, "--quiet", "precompute", "--teacher", str(TEACHER), "--data", str(TEST), "--input-column", "image",
         "--temperature", str(T), "--out", str(out), "--rows-per-part", "4000",
         "--class-names", ",".join(str(i) for i in range(10))],
        check=True,
    )
    return out


def stack(col):
    return np.stack(col.to_numpy(zero_copy_only=False))


def test_folder_opens_with_pyarrow_dataset(labels):
    parts = sorted(p.name for p in labels.glob("*.parquet"))
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    ds = pads.dataset(str(labels), format="parquet")
    assert ds.count_rows() == 10_000
    table = ds.to_table()
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("label").type == pa.int64()
    assert table.schema.field("input").type == pa.list_(pa.field("item", pa.uint8(), nullable=False), 784)
    for c in ("logits", "soft"):
        assert table.schema.field(c).type == pa.list_(pa.field("item", pa.float32(), nullable=False), 10)


def test_metadata_matches_manifest(labels):
    manifest = json.loads((labels / "_manifest.json").read_text())
    md = {k.decode(): v.decode() for k, v in pq.read_schema(labels / "part-00001.parquet").metadata.items()}
    # 1.3: the teacher takes float32, the stored pixels are uint8, so the manifest records the teacher's type.
    assert md["softlabel.schema_version"] == manifest["schema_version"] == "2.3"
    assert manifest["teacher"]["input_type"] == "f32" and manifest["input"]["dtype"] == "u8"
    assert float(md["softlabel.temperature"]) == manifest["temperature"] == T
    assert md["softlabel.teacher_sha256"] == manifest["teacher"]["sha256"]
    import hashlib
    assert manifest["teacher"]["sha256"] == hashlib.sha256(TEACHER.read_bytes()).hexdigest()
    assert md["softlabel.teacher_file"] == "mnist_cnn.onnx"
    assert int(md["softlabel.num_classes"]) == 10
    assert json.loads(md["softlabel.class_names"]) == [str(i) for i in range(10)]
    assert json.loads(md["softlabel.input_shape"]) == [1, 28, 28]
    source = json.loads(md["softlabel.source"])
    assert source["files"][0]["sha256"] == hashlib.sha256(TEST.read_bytes()).hexdigest()
    assert md["softlabel.created_by"].startswith("softlabel ")
    # The Parquet footer carries the same key-value pairs.
    footer = pq.ParquetFile(labels / "part-00000.parquet").metadata.metadata
    assert footer[b"softlabel.teacher_sha256"].decode() == manifest["teacher"]["sha256"]
    assert sum(p["rows"] for p in manifest["parts"]) == manifest["rows"] == 10_000


def test_soft_is_softmax_of_logits_over_t(labels):
    table = pads.dataset(str(labels), format="parquet").to_table()
    logits = stack(table["logits"]).astype(np.float64)
    soft = stack(table["soft"]).astype(np.float64)
    z = logits / T
    z -= z.max(axis=1, keepdims=True)
    ref = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # numpy float64 reference
    assert np.abs(soft - ref).max() < 1e-6


def test_logits_equal_python_onnxruntime(labels):
    table = pads.dataset(str(labels), format="parquet").to_table().sort_by("id")
    source = pq.read_table(TEST).sort_by("id")
    assert table["id"].to_pylist() == source["id"].to_pylist()
    assert table["label"].to_pylist() == source["label"].to_pylist()
    images = stack(source["image"])
    assert np.array_equal(stack(table["input"]), images)
    sess = ort.InferenceSession(str(TEACHER), providers=["CPUExecutionProvider"])
    ref = np.concatenate([
        sess.run(None, {"image": images[i:i + 1000].astype(np.float32).reshape(-1, 1, 28, 28)})[0]
        for i in range(0, len(images), 1000)
    ])
    assert np.abs(stack(table["logits"]) - ref).max() < 1e-5


def test_encodings_and_compression(labels):
    meta = pq.ParquetFile(labels / "part-00000.parquet").metadata
    rg = meta.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert all(c.compression == "ZSTD" for c in cols.values())
    assert "RLE_DICTIONARY" not in cols["id"].encodings and "PLAIN_DICTIONARY" not in cols["id"].encodings
    for name in ("logits.list.item", "soft.list.item"):
        assert "BYTE_STREAM_SPLIT" in cols[name].encodings
