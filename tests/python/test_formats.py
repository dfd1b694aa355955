"""The same MNIST pixels as Parquet, as .npy (uint8 [N, 1, 28, 28], written by numpy), as .npz and as
CSV (784 pixel columns, written by pandas) give bit-identical logits from the real MNIST CNN teacher, and
those equal Python onnxruntime's on the same pixels within 1e-5."""
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
ROWS = 2000


def run(*args):
    subprocess.run([BIN, "--quiet", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def logits(ds: Path) -> np.ndarray:
    t = pq.read_table(sorted(ds.glob("part-*.parquet"))).sort_by("id")
    return np.stack(t.column("logits").to_numpy(zero_copy_only=False))


def test_mnist_as_npy_npz_and_csv_gives_the_parquet_logits(tmp_path):
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, ROWS)
    x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).astype(np.uint8)
    y = t.column("label").to_numpy().astype(np.int64)
    pq.write_table(pa.table({"image": t.column("image"), "label": y}), tmp_path / "mnist.parquet")
    np.save(tmp_path / "mnist.npy", x.reshape(-1, 1, 28, 28))
    np.save(tmp_path / "labels.npy", y)
    np.savez_compressed(tmp_path / "mnist.npz", images=x.reshape(-1, 1, 28, 28), labels=y)
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(784)])
    frame.insert(0, "label", y)
    frame.to_csv(tmp_path / "mnist.csv", index=False)

    common = ["--teacher", TEACHER, "-T", "4", "--batch-size", "256"]
    run("precompute", *common, "--data", tmp_path / "mnist.parquet", "--input-column", "image", "--out", tmp_path / "pq")
    run("precompute", *common, "--data", tmp_path / "mnist.npy", "--labels-npy", tmp_path / "labels.npy",
        "--out", tmp_path / "npy")
    run("precompute", *common, "--data", tmp_path / "mnist.npz", "--npz-key", "images", "--npz-labels", "labels",
        "--out", tmp_path / "npz")
    run("precompute", *common, "--data", tmp_path / "mnist.csv", "--out", tmp_path / "csv")
    want = logits(tmp_path / "pq")
    assert want.shape == (ROWS, 10)
    for name in ["npy", "npz", "csv"]:
        np.testing.assert_array_equal(logits(tmp_path / name), want, err_msg=name)
        labels = pq.read_table(sorted((tmp_path / name).glob("part-*.parquet"))).sort_by("id").column("label")
        np.testing.assert_array_equal(labels.to_numpy(), y, err_msg=name)

    session = ort.InferenceSession(str(TEACHER), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ref = session.run(None, {name: x.reshape(-1, 1, 28, 28).astype(np.float32)})[0]
    np.testing.assert_allclose(want, ref, rtol=1e-5, atol=1e-5)
