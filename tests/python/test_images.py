"""Image folders (torchvision's ImageFolder layout): 2,000 MNIST test digits written as PNG files by
Pillow into class folders give bit-identical teacher logits to the Parquet path on the same pixels (in
the folder's id order: sorted relative paths), labels and class names from the folders; real JPEG
photographs (the two scikit-learn ships) decode within JPEG's decoder tolerance of Pillow's decode; bad
folders and images are refused in one line naming the file."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"


def run(*args, check=True):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=check, capture_output=True, text=True)


def stored(ds: Path, column: str) -> np.ndarray:
    t = pq.read_table(sorted(ds.glob("part-*.parquet"))).sort_by("id")
    return np.stack(t.column(column).to_numpy(zero_copy_only=False))


def test_mnist_png_folder_gives_the_parquet_logits(tmp_path):
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 2000)
    x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).astype(np.uint8).reshape(-1, 28, 28)
    y = t.column("label").to_numpy()
    folder = tmp_path / "digits"
    rel = []
    for i, (img, label) in enumerate(zip(x, y)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        name = f"{label}/{i:05d}.png"
        Image.fromarray(img, mode="L").save(folder / name)
        rel.append(name)
    order = sorted(range(len(rel)), key=lambda i: rel[i].encode())
    pq.write_table(pa.table({"image": pa.FixedSizeListArray.from_arrays(pa.array(x[order].reshape(-1)), 784),
                             "label": y[order].astype(np.int64)}), tmp_path / "same.parquet")
    common = ["--teacher", TEACHER, "-T", "4", "--batch-size", "256"]
    run("precompute", *common, "--data", folder, "--out", tmp_path / "from-png")
    run("precompute", *common, "--data", tmp_path / "same.parquet", "--input-column", "image",
        "--out", tmp_path / "from-parquet")
    np.testing.assert_array_equal(stored(tmp_path / "from-png", "logits"), stored(tmp_path / "from-parquet", "logits"))
    np.testing.assert_array_equal(stored(tmp_path / "from-png", "input"), x[order].reshape(-1, 784))
    labels = pq.read_table(sorted((tmp_path / "from-png").glob("part-*.parquet"))).sort_by("id").column("label")
    np.testing.assert_array_equal(labels.to_numpy(), y[order])
    m = json.loads((tmp_path / "from-png" / "_manifest.json").read_text())
    assert m["class_names"] == [str(c) for c in range(10)]
    assert m["input"]["dtype"] == "u8" and m["input"]["width"] == 784
    assert len(m["source"]["files"]) == 1 and m["source"]["files"][0]["rows"] == 2000
    # Resuming, the fingerprint over the files finds the same folder.
    run("precompute", *common, "--data", folder, "--out", tmp_path / "from-png", "--resume")


def mean_teacher(path: Path, c: int, h: int, w: int):
    """A teacher that takes [batch, c, h, w] float32 and outputs [batch, 2] (the mean pixel twice)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Concat", ["m1", "m1"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "mean", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, h, w])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
                          [helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_real_jpeg_photographs_decode_like_pillow(tmp_path):
    sklearn = pytest.importorskip("sklearn")
    photos = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
    assert len(photos) == 2, photos
    folder = tmp_path / "photos"
    (folder / "photo").mkdir(parents=True)
    for p in photos:
        (folder / "photo" / p.name).write_bytes(p.read_bytes())
    ref = [np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in photos]
    c, h, w = ref[0].shape
    mean_teacher(tmp_path / "mean.onnx", c, h, w)
    run("precompute", "--teacher", tmp_path / "mean.onnx", "--data", folder, "-T", "1", "--out", tmp_path / "ds")
    got = stored(tmp_path / "ds", "input").reshape(-1, c, h, w)
    for g, r, p in zip(got, ref, photos):
        diff = np.abs(g.astype(np.int32) - r.astype(np.int32))
        # Two JPEG decoders (zune-jpeg here, libjpeg-turbo in Pillow) round the inverse DCT and the
        # chroma upsampling differently; the images are the same to within a few levels.
        print(f"{p.name}: mean |diff| {diff.mean():.3f}, max {diff.max()}, share exact {np.mean(diff == 0):.3f}")
        # Measured: mean |diff| 0.013 and 0.011, max 3, 98.8% and 99.1% of the values exact.
        assert diff.mean() < 0.05 and diff.max() <= 4, (p.name, diff.mean(), diff.max())


def test_bad_image_folders_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "f"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(folder / "a" / "1.png")
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(folder / "b" / "2.png")
    good = (folder / "a" / "1.png").read_bytes()
    cases = [
        ("b/3.png", good[: len(good) // 2], "3.png: cannot decode the image"),
        ("b/4.png", b"not a png at all", "4.png: cannot decode the image"),
    ]
    for name, data, expect in cases:
        (folder / name).write_bytes(data)
        r = run("precompute", "--teacher", TEACHER, "--data", folder, "-T", "2", "--out", tmp_path / "out",
                check=False)
        assert r.returncode == 1 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "out" / "_manifest.json").exists()
        (folder / name).unlink()
    Image.fromarray(np.zeros((20, 28), np.uint8), mode="L").save(folder / "b" / "5.png")
    r = run("precompute", "--teacher", TEACHER, "--data", folder, "-T", "2", "--out", tmp_path / "out", check=False)
    assert r.returncode == 1 and "5.png: is 20x28 (height x width), the rows 28x28: give --resize S" in r.stderr, r.stderr
    (folder / "b" / "5.png").unlink()
    big = tmp_path / "big"
    (big / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((4800, 4800, 3), np.uint8), mode="RGB").save(big / "a" / "0.png")
    r = run("precompute", "--teacher", TEACHER, "--data", big, "-T", "2", "--out", tmp_path / "out", check=False)
    assert r.returncode == 1 and "0.png: is [3, 4800, 4800] values, more than the 67108864" in r.stderr, r.stderr
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    r = run("precompute", "--teacher", TEACHER, "--data", empty, "-T", "2", "--out", tmp_path / "out", check=False)
    assert r.returncode == 1 and "no .png, .jpg or .jpeg images in class subfolders" in r.stderr, r.stderr
