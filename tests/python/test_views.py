"""`precompute --views`: every stored view is its source image shifted as the `shift_x`/`shift_y` columns say
(rebuilt here from the rule in SCHEMA.md, in numpy), its logits are Python onnxruntime's on that shifted
image, and a view whose shift another tool changed is caught by `softlabel verify`."""
import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
from softlabel_testing import reseal

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def shift_of(id_: int, view: int, seed: int, s: int):
    """SCHEMA.md's rule for the shift of `view` of row `id_`."""
    if view == 0:
        return 0, 0
    h = splitmix64((splitmix64(id_ ^ seed) + view) & M64)
    span = 2 * s + 1
    return h % span - s, (h >> 32) % span - s


def shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y][x] = img[y - dy][x - dx], zero outside."""
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_views_are_reproducible_from_their_recorded_shifts(tmp_path):
    source = tmp_path / "mnist300.parquet"
    pq.write_table(pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 300), source)
    out = tmp_path / "views"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", str(TEACHER), "--data", str(source), "--input-column",
                    "image", "--temperature", "4", "--out", str(out), "--views", "5", "--max-shift", "2",
                    "--view-seed", "11", "--rows-per-part", "500"], check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["schema_version"] == "2.3"  # views (1.2), and a float32 teacher fed uint8 pixels (1.3)
    assert manifest["views"] == {"count": 5, "max_shift": 2, "image": [1, 28, 28], "seed": 11}

    t = pds.dataset(out).to_table()
    assert t.num_rows == 1500
    assert t.schema.field("view").type == pa.uint16()
    assert t.schema.field("shift_x").type == pa.int16() and t.schema.field("shift_y").type == pa.int16()
    src = pq.read_table(source)
    images = {i: np.array(x, dtype=np.uint8).reshape(28, 28) for i, x in zip(src["id"].to_pylist(), src["image"].to_pylist())}
    ids, views = t["id"].to_numpy(), t["view"].to_numpy()
    sx, sy = t["shift_x"].to_numpy(), t["shift_y"].to_numpy()
    stored = np.stack(t["input"].to_numpy(zero_copy_only=False)).reshape(-1, 28, 28)
    expect = np.stack([shifted(images[i], shift_of(int(i), int(v), 11, 2)[0], shift_of(int(i), int(v), 11, 2)[1])
                       for i, v in zip(ids, views)])
    assert [tuple(shift_of(int(i), int(v), 11, 2)) for i, v in zip(ids, views)] == list(zip(sx.tolist(), sy.tolist()))
    np.testing.assert_array_equal(stored, expect)
    assert ((sx != 0) | (sy != 0)).mean() > 0.7, "views 1..4 are mostly shifted"

    # The teacher's outputs are those of the shifted image (Python onnxruntime reference, 1e-4 relative).
    sess = ort.InferenceSession(str(TEACHER), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: expect.reshape(-1, 1, 28, 28).astype(np.float32)})[0]
    logits = np.stack(t["logits"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4)
    soft = np.stack(t["soft"].to_numpy(zero_copy_only=False))
    z = logits / 4.0
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(soft, p / p.sum(1, keepdims=True), atol=1e-6)
    # Other engines see the same rows: one per (id, view).
    n = duckdb.connect().execute(
        f"SELECT count(DISTINCT (id, view)) FROM read_parquet('{out}/part-*.parquet')").fetchone()[0]
    assert n == 1500

    # Another tool changes one shift (and re-seals the manifest consistently): verify names it.
    part = out / "part-00001.parquet"
    table = pq.read_table(part)
    col = table["shift_x"].to_pylist()
    col[7] = 2 if col[7] != 2 else -2
    i = table.schema.get_field_index("shift_x")
    table = table.set_column(i, table.schema.field(i), pa.array(col, type=pa.int16()))
    pq.write_table(table, part, compression="zstd")
    reseal(out, part)
    bad = subprocess.run([BIN, "verify", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "part-00001.parquet: columns 'view', 'shift_x', 'shift_y', row 7" in bad.stderr, bad.stderr
