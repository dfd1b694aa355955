"""Image folders fitted to the teacher's input (`--resize`, centre crop, channels, layout, `--scale`,
`--mean`, `--std`, `--skip-bad-images`), checked against Pillow on real photographs (the two JPEGs
scikit-learn ships) and generated PNGs of other sizes, one grey and one smaller than the crop.

Reference: Pillow's `convert` and `resize(BILINEAR)` with torchvision's `Resize(S)` sizes and
`CenterCrop` offsets and padding written out below (torchvision itself is not a test dependency).
Measured by hand against torchvision 0.29.2 (`Resize(72)`, `CenterCrop(64)`, `ToTensor`, `Normalize`
with the ImageNet mean and std; `Grayscale(1)` for a grey teacher) on these images: every value within one
level (normalised: 0.0175 = 1 / 255 / 0.224), 78-93% exact; the differences are the resize's rounding
(Pillow in fixed point, the `image` crate in floating point). Without a resize the rows equal Pillow's
exactly."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def run(*args, check=True):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=check, capture_output=True, text=True)


def rows(ds: Path) -> np.ndarray:
    t = pq.read_table(sorted(ds.glob("part-*.parquet"))).sort_by("id")
    return np.stack(t.column("input").to_numpy(zero_copy_only=False))


def teacher(path: Path, shape):
    """float32 [batch, *shape] -> [batch, 2]: the mean value, twice."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Concat", ["m", "m"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "mean", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def torchvision_like(path: Path, resize, size, mode):
    """Resize(resize) + CenterCrop(size) as torchvision does them on a PIL image, as uint8 [H, W, C]."""
    img = Image.open(path).convert(mode)
    if resize is not None:
        w, h = img.size
        nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BILINEAR)
    x = np.asarray(img)
    x = x[:, :, None] if x.ndim == 2 else x
    (ch, cw), (ih, iw) = size, x.shape[:2]
    if ch > ih or cw > iw:
        pl, pt = max(cw - iw, 0) // 2, max(ch - ih, 0) // 2
        x = np.pad(x, ((pt, max(ch - ih, 0) - pt), (pl, max(cw - iw, 0) - pl), (0, 0)))
        ih, iw = x.shape[:2]
    top, left = int(round((ih - ch) / 2.0)), int(round((iw - cw) / 2.0))
    return x[top:top + ch, left:left + cw]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    sklearn = pytest.importorskip("sklearn")
    root = tmp_path_factory.mktemp("images") / "f"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for p in sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg")):
        (root / "a" / p.name).write_bytes(p.read_bytes())    # 427 x 640 photographs
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(300, 200), (97, 131), (64, 64), (20, 30)]):
        small = rng.integers(0, 256, size=(h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(root / "b" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, size=(80, 50)).astype(np.uint8), mode="L").save(root / "b" / "grey.png")
    names = sorted((str(p.relative_to(root)) for p in root.rglob("*.*")), key=str.encode)
    return root, names


@pytest.mark.parametrize("resize", [72, 40])     # 40: smaller than the 64 x 64 crop, so zero-padded
def test_resize_and_centre_crop_follow_pillow_and_torchvision(tmp_path, folder, resize):
    root, names = folder
    chw = teacher(tmp_path / "chw.onnx", [3, 64, 64])
    run("precompute", "--teacher", chw, "--data", root, "-T", "1", "--resize", resize, "--out", tmp_path / "rgb")
    got = rows(tmp_path / "rgb").reshape(-1, 3, 64, 64)
    for g, name in zip(got, names):
        ref = torchvision_like(root / name, resize, (64, 64), "RGB").transpose(2, 0, 1)
        diff = np.abs(g.astype(np.int32) - ref.astype(np.int32))
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.75, (name, diff.max(), np.mean(diff == 0))
    m = json.loads((tmp_path / "rgb" / "_manifest.json").read_text())
    assert m["schema_version"] == "2.6"
    assert m["input"]["image"] == {"resize": resize, "size": [64, 64], "channels": 3, "layout": "chw"}
    assert m["input"]["dtype"] == "u8" and m["input"]["shape"] == [3, 64, 64]


def test_channels_last_grey_and_normalised_rows(tmp_path, folder):
    root, names = folder
    common = ["-T", "1", "--data", root, "--resize", 72]
    run("precompute", "--teacher", teacher(tmp_path / "chw.onnx", [3, 64, 64]), *common, "--out", tmp_path / "chw")
    run("precompute", "--teacher", teacher(tmp_path / "hwc.onnx", [64, 64, 3]), *common, "--out", tmp_path / "hwc")
    run("precompute", "--teacher", teacher(tmp_path / "grey.onnx", [1, 64, 64]), *common, "--out", tmp_path / "grey")
    run("precompute", "--teacher", tmp_path / "chw.onnx", *common, "--scale", "1/255", "--mean", ",".join(map(str, MEAN)),
        "--std", ",".join(map(str, STD)), "--out", tmp_path / "norm")
    chw = rows(tmp_path / "chw").reshape(-1, 3, 64, 64)
    np.testing.assert_array_equal(rows(tmp_path / "hwc").reshape(-1, 64, 64, 3), chw.transpose(0, 2, 3, 1))
    for g, name in zip(rows(tmp_path / "grey"), names):
        ref = torchvision_like(root / name, 72, (64, 64), "L").reshape(-1)
        assert np.abs(g.astype(np.int32) - ref.astype(np.int32)).max() <= 1, name
    # ToTensor then Normalize, in float32, on the same uint8 rows: bit for bit.
    mean, std = np.float32(MEAN)[:, None, None], np.float32(STD)[:, None, None]
    want = (chw.astype(np.float32) / np.float32(255) - mean) / std
    norm = rows(tmp_path / "norm")
    assert norm.dtype == np.float32
    np.testing.assert_array_equal(norm, want.reshape(len(chw), -1))
    m = json.loads((tmp_path / "norm" / "_manifest.json").read_text())
    assert m["input"]["dtype"] == "f32"
    assert m["input"]["image"]["normalize"]["mean"] == pytest.approx(MEAN) and m["input"]["image"]["normalize"]["scale"] == pytest.approx(1 / 255)


def test_without_a_resize_rows_equal_pillow_and_other_sizes_are_refused(tmp_path, folder):
    root, names = folder
    same = tmp_path / "same"
    (same / "x").mkdir(parents=True)
    for name in ["b/2.png", "a/china.jpg"]:
        img = Image.open(root / name).convert("RGB").resize((64, 64), Image.BILINEAR)
        img.save(same / "x" / (Path(name).stem + ".png"))
    grey = teacher(tmp_path / "grey.onnx", [1, 64, 64])
    run("precompute", "--teacher", grey, "--data", same, "-T", "1", "--out", tmp_path / "g")
    for g, name in zip(rows(tmp_path / "g"), sorted(p.name for p in (same / "x").iterdir())):
        np.testing.assert_array_equal(g, np.asarray(Image.open(same / "x" / name).convert("L")).reshape(-1))
    r = run("precompute", "--teacher", grey, "--data", root, "-T", "1", "--out", tmp_path / "no", check=False)
    assert r.returncode == 1 and "china.jpg: is 427x640 (height x width), the rows 64x64: give --resize S" in r.stderr, r.stderr
    r = run("precompute", "--teacher", grey, "--data", root, "-T", "1", "--resize", 72, "--mean", "0.1,0.2",
            "--out", tmp_path / "no", check=False)
    assert r.returncode == 1 and "--mean has 2 values; the images have 1 channel(s)" in r.stderr, r.stderr


def test_bad_images_are_skipped_and_counted_and_label_only_rows_join_back(tmp_path, folder):
    root, _ = folder
    bad = tmp_path / "bad"
    (bad / "a").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(bad / "a" / f"{i}.png")
    good = (bad / "a" / "0.png").read_bytes()
    (bad / "a" / "2.png").write_bytes(good[: len(good) // 2])     # truncated
    (bad / "a" / "4.png").write_bytes(b"not an image")
    chw = teacher(tmp_path / "chw.onnx", [3, 64, 64])
    r = run("precompute", "--teacher", chw, "--data", bad, "-T", "1", "--out", tmp_path / "no", check=False)
    assert r.returncode == 1 and "2.png: cannot decode the image" in r.stderr, r.stderr
    r = subprocess.run([BIN, "precompute", "--teacher", str(chw), "--data", str(bad), "-T", "1", "--skip-bad-images",
                        "--out", str(tmp_path / "ok")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2.png" in r.stderr and "4.png" in r.stderr    # each skipped image named in a warning
    t = pq.read_table(sorted((tmp_path / "ok").glob("part-*.parquet"))).sort_by("id")
    assert t.column("id").to_pylist() == [0, 1, 3, 5]
    m = json.loads((tmp_path / "ok" / "_manifest.json").read_text())
    assert m["rows"] == 4 and m["skipped_nonfinite_rows"] == 2 and m["input"]["image"]["skip_bad_images"] is True
    # Label-only labels of the image folder: train joins the folder back by id, prepared as recorded.
    run("precompute", "--teacher", chw, "--data", root, "-T", "1", "--resize", 72, "--no-inputs", "--out", tmp_path / "bare")
    run("precompute", "--teacher", chw, "--data", root, "-T", "1", "--resize", 72, "--out", tmp_path / "full")
    for name, extra in [("s_bare", ["--labels", tmp_path / "bare", "--inputs", root]), ("s_full", ["--labels", tmp_path / "full"])]:
        run("train", *extra, "--out", tmp_path / name, "--hidden", "8", "--epochs", "1", "--threads", "1")
    assert (tmp_path / "s_bare" / "student.safetensors").read_bytes() == (tmp_path / "s_full" / "student.safetensors").read_bytes()
    info = json.loads((tmp_path / "s_bare" / "student.json").read_text())
    assert info["input_image"]["resize"] == 72
    # eval on the folder prepares it as the student's labels were.
    r = run("eval", "--student", tmp_path / "s_bare", "--data", root, "--json")
    assert json.loads(r.stdout)["rows"] == 7


def test_a_csv_listing_images_gives_ids_labels_class_names_and_paths(tmp_path, folder):
    root, _ = folder
    listing = root / "subset.csv"
    # Quoted paths, class names as labels, one unlabeled image; not every image of the folder.
    listing.write_text('path,label\n"b/1.png",dog\nb/0.png,cat\na/flower.jpg,\nb/grey.png,dog\n')
    chw = teacher(tmp_path / "chw.onnx", [3, 64, 64])
    common = ["--teacher", chw, "-T", "1", "--resize", 72]
    run("precompute", *common, "--data", listing, "--out", tmp_path / "listed")
    t = pq.read_table(sorted((tmp_path / "listed").glob("part-*.parquet"))).sort_by("id")
    assert t.column("path").to_pylist() == ["a/flower.jpg", "b/0.png", "b/1.png", "b/grey.png"]    # byte order
    assert t.column("label").to_pylist() == [None, 0, 1, 1]
    m = json.loads((tmp_path / "listed" / "_manifest.json").read_text())
    assert m["class_names"] == ["cat", "dog"] and m["label_column"] == "label" and m["labeled_rows"] == 3
    # The rows equal the same images read from the folder (ids differ: the listing holds a subset).
    run("precompute", *common, "--data", root, "--out", tmp_path / "folder")
    f = pq.read_table(sorted((tmp_path / "folder").glob("part-*.parquet")))
    by_path = dict(zip(f.column("path").to_pylist(), f.column("input").to_pylist()))
    for p, x in zip(t.column("path").to_pylist(), t.column("input").to_pylist()):
        assert x == by_path[p], p
    # Label-only labels of the listing join back through the same CSV.
    run("precompute", *common, "--data", listing, "--no-inputs", "--out", tmp_path / "bare")
    run("train", "--labels", tmp_path / "bare", "--inputs", listing, "--out", tmp_path / "s1", "--hidden", "4",
        "--epochs", "1", "--threads", "1")
    run("train", "--labels", tmp_path / "listed", "--out", tmp_path / "s2", "--hidden", "4", "--epochs", "1", "--threads", "1")
    assert (tmp_path / "s1" / "student.safetensors").read_bytes() == (tmp_path / "s2" / "student.safetensors").read_bytes()


def test_fkd_crop_views_store_boxes_and_rebuild_the_same_pixels(tmp_path, folder):
    """`--views 4 --crop-scale 0.35,1 --flip`: view 0 is the prepared image; every other view is its
    recorded box of the source image, resized to the teacher's 64 x 64 and flipped as recorded (checked
    against Pillow: crop, BILINEAR resize, FLIP_LEFT_RIGHT, within one level); the boxes follow
    RandomResizedCrop's ranges; the same seed gives the same dataset byte for byte, and label-only labels
    rebuild exactly the stored pixels from the images (a student trained either way has the same weights)."""
    root, names = folder
    chw = teacher(tmp_path / "chw.onnx", [3, 64, 64])
    common = ["--teacher", chw, "--data", root, "-T", "1", "--resize", 72, "--views", 4, "--crop-scale", "0.35,1",
              "--flip", "--view-seed", 3]
    run("precompute", *common, "--out", tmp_path / "v")
    run("precompute", *common, "--out", tmp_path / "v2")
    parts = lambda d: [p.read_bytes() for p in sorted(d.glob("part-*.parquet"))]
    assert parts(tmp_path / "v") == parts(tmp_path / "v2")
    run("precompute", "--teacher", chw, "--data", root, "-T", "1", "--resize", 72, "--out", tmp_path / "plain")
    plain = rows(tmp_path / "plain")
    t = pq.read_table(sorted((tmp_path / "v").glob("part-*.parquet"))).sort_by([("id", "ascending"), ("view", "ascending")])
    m = json.loads((tmp_path / "v" / "_manifest.json").read_text())
    assert m["schema_version"] == "2.8" and m["views"]["crop"] == {"scale": [0.35, 1.0], "flip": True}
    got = np.stack(t.column("input").to_numpy(zero_copy_only=False))
    flips = 0
    for r, row in enumerate(t.to_pylist()):
        name = names[row["id"]]
        if row["view"] == 0:
            assert row["crop_w"] == 0 and not row["flip"]
            np.testing.assert_array_equal(got[r], plain[row["id"]])
            continue
        img = Image.open(root / name).convert("RGB")
        x, y, w, h = row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"]
        area = w * h / (img.size[0] * img.size[1])
        assert 0.3 < area <= 1.0 and 3 / 4 - 0.1 < w / h < 4 / 3 + 0.1, (name, row)
        ref = img.crop((x, y, x + w, y + h)).resize((64, 64), Image.BILINEAR)
        if row["flip"]:
            ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
            flips += 1
        ref = np.asarray(ref).transpose(2, 0, 1).reshape(-1).astype(np.int32)
        assert np.abs(got[r].astype(np.int32) - ref).max() <= 1, (name, row)
    assert 0 < flips < 21
    # Label-only: the views are rendered again from the images by their boxes.
    run("precompute", *common, "--no-inputs", "--out", tmp_path / "bare")
    for name, extra in [("s_bare", ["--labels", tmp_path / "bare", "--inputs", root]), ("s_full", ["--labels", tmp_path / "v"])]:
        run("train", *extra, "--out", tmp_path / name, "--hidden", "8", "--epochs", "1", "--threads", "1")
    assert (tmp_path / "s_bare" / "student.safetensors").read_bytes() == (tmp_path / "s_full" / "student.safetensors").read_bytes()
    r = run("precompute", "--teacher", ROOT / "data" / "teachers" / "mnist_cnn.onnx", "--data",
            ROOT / "data" / "mnist" / "test.parquet", "--input-column", "image", "-T", "1", "--views", 2,
            "--crop-scale", "0.5,1", "--out", tmp_path / "no", check=False)
    assert r.returncode == 1 and "--crop-scale makes crop views of images" in r.stderr, r.stderr
