"""The soft-label folder as other teams open it: pandas, polars and DuckDB read every part (the folder or a
glob), see the documented types and metadata, recompute `soft` from `logits` and T within 1e-6, and a
numpy student trains on the files. Uses the real MNIST test split through the shipped teacher."""
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
T = 4.0


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    out = tmp_path_factory.mktemp("readers") / "mnist-test"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", str(ROOT / "data/teachers/mnist_cnn.onnx"),
                    "--data", str(ROOT / "data/mnist/test.parquet"), "--input-column", "image",
                    "--temperature", str(T), "--out", str(out), "--rows-per-part", "3000"], check=True)
    return out


def softmax_t(logits, t):
    z = logits.astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_pandas(labels):
    df = pd.read_parquet(labels)  # the folder: _manifest.json is skipped like _SUCCESS
    assert len(df) == 10_000 and df["id"].is_unique
    assert str(df["id"].dtype) == "int64" and str(df["label"].dtype) in ("int64", "Int64")
    logits, soft = np.stack(df["logits"].to_numpy()), np.stack(df["soft"].to_numpy())
    assert logits.dtype == np.float32 and logits.shape == (10_000, 10)
    assert np.abs(soft - softmax_t(logits, T)).max() < 1e-6


def test_polars(labels):
    df = pl.read_parquet(str(labels / "*.parquet"))
    assert df.height == 10_000
    assert df.schema["id"] == pl.Int64 and df.schema["label"] == pl.Int64
    assert df.schema["logits"] == pl.Array(pl.Float32, 10) and df.schema["input"] == pl.Array(pl.UInt8, 784)
    logits, soft = df["logits"].to_numpy(), df["soft"].to_numpy()
    assert np.abs(soft - softmax_t(logits, T)).max() < 1e-6


def test_duckdb(labels):
    con = duckdb.connect()
    glob = str(labels / "*.parquet")
    n, ids = con.execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{glob}')").fetchone()
    assert n == ids == 10_000
    types = dict(con.execute(f"DESCRIBE SELECT id, label, logits, soft FROM read_parquet('{glob}')").fetchall()[i][:2]
                 for i in range(4))
    # Parquet has no fixed-size list: readers that ignore the embedded Arrow schema (DuckDB, Spark) see a
    # variable-length list, every one of length K.
    assert types == {"id": "BIGINT", "label": "BIGINT", "logits": "FLOAT[]", "soft": "FLOAT[]"}
    lo, hi = con.execute(f"SELECT min(len(logits)), max(len(soft)) FROM read_parquet('{glob}')").fetchone()
    assert lo == hi == 10
    kv = {k.decode(): v.decode() for k, v in con.execute(
        f"SELECT key, value FROM parquet_kv_metadata('{glob}') WHERE file_name LIKE '%part-00000%'").fetchall()}
    manifest = json.loads((labels / "_manifest.json").read_text())
    assert kv["softlabel.teacher_sha256"] == manifest["teacher"]["sha256"]
    assert float(kv["softlabel.temperature"]) == T
    rows = con.execute(f"SELECT logits, soft FROM read_parquet('{glob}') ORDER BY id").fetchall()
    logits = np.array([r[0] for r in rows], np.float32)
    soft = np.array([r[1] for r in rows])
    assert np.abs(soft - softmax_t(logits, T)).max() < 1e-6


def test_every_reader_gets_the_source_pixels_back(labels):
    """The `input` column's pages are built by softlabel's own 8-bit encoder (store::writer::part): each
    reader decodes them to the source's pixels, id for id."""
    src = pq.read_table(ROOT / "data/mnist/test.parquet")
    images = np.stack(src["image"].to_numpy(zero_copy_only=False))
    order = np.argsort(src["id"].to_numpy())
    glob = str(labels / "*.parquet")
    by_reader = {
        "pyarrow": pq.read_table(labels, columns=["id", "input"]).sort_by("id")["input"].to_numpy(zero_copy_only=False),
        "pandas": pd.read_parquet(labels, columns=["id", "input"]).sort_values("id")["input"].to_numpy(),
        "polars": pl.read_parquet(glob, columns=["id", "input"]).sort("id")["input"].to_numpy(),
        "duckdb": [r[0] for r in duckdb.connect().execute(f"SELECT input FROM read_parquet('{glob}') ORDER BY id").fetchall()],
    }
    for reader, rows in by_reader.items():
        got = np.array([np.asarray(r) for r in rows]).astype(np.int64)
        assert got.shape == (10_000, 784), reader
        np.testing.assert_array_equal(got, images[order].astype(np.int64), err_msg=reader)


def test_a_numpy_student_learns_from_the_files(labels):
    """The README's snippet, extended: softmax regression on the soft targets; the KD loss falls."""
    import pyarrow.dataset as ds
    t = ds.dataset(str(labels), format="parquet").to_table()
    x = np.stack(t["input"].to_numpy(zero_copy_only=False)).astype(np.float32) / 255.0
    p = np.stack(t["soft"].to_numpy(zero_copy_only=False)).astype(np.float64)
    w = np.zeros((784, 10))
    losses = []
    for _ in range(30):
        q = softmax_t(x @ w, T)
        losses.append(float(-(p * np.log(q + 1e-12)).sum(axis=1).mean()))
        w -= 5.0 * x.T @ (q - p) / (T * len(x))
    assert losses[-1] < losses[0] - 0.1, losses


def test_top_k_files_read_everywhere_and_give_exact_probabilities(labels, tmp_path):
    """A top-k dataset: every reader sees the sparse columns; p_T of a stored class,
    exp(topk_logit / T - logsumexp_t), equals the dense dataset's `soft` at that class within 1e-6."""
    topk = tmp_path / "topk"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", str(ROOT / "data/teachers/mnist_cnn.onnx"),
                    "--data", str(ROOT / "data/mnist/test.parquet"), "--input-column", "image",
                    "--temperature", str(T), "--out", str(topk), "--top-k", "5"], check=True)
    sp = pd.read_parquet(topk).sort_values("id")
    dense = pd.read_parquet(labels).sort_values("id")
    # Labelled rows: the label's logit follows (schema 2.11).
    assert list(sp.columns) == ["id", "label", "input", "topk_index", "topk_logit", "logsumexp_t", "label_logit"]
    idx = np.stack(sp["topk_index"].to_numpy()).astype(np.int64)
    p = np.exp(np.stack(sp["topk_logit"].to_numpy()).astype(np.float64) / T - sp["logsumexp_t"].to_numpy()[:, None])
    soft = np.stack(dense["soft"].to_numpy())
    assert np.abs(p - np.take_along_axis(soft, idx, axis=1)).max() < 1e-6
    assert (np.diff(p, axis=1) <= 1e-12).all()  # stored by descending probability
    pl_df = pl.read_parquet(str(topk / "*.parquet"))
    assert pl_df.schema["topk_index"] == pl.Array(pl.UInt32, 5) and pl_df.schema["logsumexp_t"] == pl.Float64
    n, lo, hi = duckdb.connect().execute(
        f"SELECT count(*), min(len(topk_index)), max(len(topk_logit)) FROM read_parquet('{topk}/*.parquet')").fetchone()
    assert (n, lo, hi) == (10_000, 5, 5)
    manifest = json.loads((topk / "_manifest.json").read_text())
    # 2.11 > 2.3 > 2.1: the label's logit, a float32 teacher fed uint8 pixels (teacher.input_type), top-k.
    assert manifest["schema_version"] == "2.11" and manifest["form"] == {"kind": "top-k", "k": 5}
    assert manifest["label_logit"] is True and manifest["teacher"]["input_type"] == "f32"


def test_schema_1_datasets_with_uint64_ids_are_still_read(tmp_path):
    """A dataset as softlabel wrote it before schema 2 (uint64 ids, schema_version 1.x) still verifies,
    inspects, trains and opens in the Python reader, with the same rows."""
    import shutil

    from softlabel_testing import reseal

    import softlabel
    src = tmp_path / "src"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", ROOT / "data" / "teachers" / "mnist_cnn.onnx",
                    "--data", ROOT / "data" / "mnist" / "test.parquet", "--input-column", "image", "-T", "4",
                    "--rows-per-part", "4000", "--out", src], check=True)
    old = tmp_path / "old"
    shutil.copytree(src, old)
    for part in sorted(old.glob("part-*.parquet")):
        t = pq.read_table(part)
        schema = t.schema.set(t.schema.get_field_index("id"), pa.field("id", pa.uint64(), False))
        pq.write_table(t.cast(schema), part)
        reseal(old, part)
    m = json.loads((old / "_manifest.json").read_text())
    m["schema_version"] = "1." + m["schema_version"].split(".")[1]
    m["checksum"] = ""
    (old / "_manifest.json").write_text(json.dumps(m))
    reseal(old, sorted(old.glob("part-*.parquet"))[0])          # recomputes the checksum
    assert pq.read_schema(sorted(old.glob("part-*.parquet"))[0]).field("id").type == pa.uint64()
    out = subprocess.run([BIN, "verify", old], check=True, capture_output=True, text=True).stdout
    assert "ok (10000 rows" in out
    a, b = softlabel.open_dataset(src), softlabel.open_dataset(old)
    np.testing.assert_array_equal(a.ids(), b.ids())
    np.testing.assert_array_equal(a.logits(), b.logits())
    for d, name in [(src, "s_new"), (old, "s_old")]:
        subprocess.run([BIN, "--quiet", "train", "--labels", d, "--out", tmp_path / name, "--hidden", "16",
                        "--epochs", "1", "--threads", "1"], check=True)
    assert (tmp_path / "s_new" / "student.safetensors").read_bytes() == \
        (tmp_path / "s_old" / "student.safetensors").read_bytes()
