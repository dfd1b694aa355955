"""The Python reader (python/, `pip install ./python`): opens datasets softlabel wrote (a path or a
file:// URL), checks the manifest and the parts, gives the columns as numpy arrays, and its losses equal
the Rust losses training uses (`softlabel loss`, on the same random student logits) within 1e-6 on
dense, top-k and sampled labels of the real MNIST CNN teacher; the PyTorch losses (when torch is
installed) equal the numpy ones and their autograd gradients the numpy gradients; a numpy student trains
from the soft labels with them."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import softlabel

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
ROWS = 1000


def run(*args):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reader")
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet")
    pq.write_table(t.slice(0, ROWS), tmp / "a.parquet")
    pq.write_table(t.slice(ROWS, ROWS), tmp / "b.parquet")
    common = ["--teacher", TEACHER, "-T", "4", "--input-column", "image", "--rows-per-part", "300"]
    out = {}
    for name, extra in [("dense", []), ("topk", ["--top-k", "3"]), ("sampled", ["--sample-k", "8"])]:
        out[name] = tmp / name
        run("precompute", *common, *extra, "--data", tmp / "a.parquet", "--out", out[name])
    out["test"] = tmp / "test"
    run("precompute", *common, "--data", tmp / "b.parquet", "--out", out["test"])
    out["tmp"] = tmp
    return out


def test_columns_and_manifest_checks(sets, tmp_path):
    ds = softlabel.open_dataset(sets["dense"])
    assert (len(ds), ds.num_classes, ds.temperature, ds.form) == (ROWS, 10, 4.0, "dense")
    assert ds.inputs().shape == (ROWS, 1, 28, 28) and ds.inputs().dtype == np.uint8
    assert len(ds.parts) == 4                                   # 300 rows a part
    src = pq.read_table(sets["tmp"] / "a.parquet")
    np.testing.assert_array_equal(ds.ids(), src.column("id").to_numpy())
    np.testing.assert_array_equal(ds.labels(), src.column("label").to_numpy())
    # soft() at the stored T is the stored soft column, bit for bit; at another T it is the softmax.
    stored = np.stack(ds.table().column("soft").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(ds.soft(), stored)
    np.testing.assert_allclose(ds.soft(1.0).sum(axis=1), 1.0, atol=1e-6)
    url = softlabel.open_dataset("file://" + str(sets["dense"].resolve()))
    np.testing.assert_array_equal(url.logits(), ds.logits())
    k = softlabel.open_dataset(sets["topk"]).topk()
    assert k.index.shape == (ROWS, 3) and (k.residual >= 0).all() and (k.p.sum(axis=1) + k.residual <= 1 + 1e-9).all()
    np.testing.assert_array_equal(k.index[:, 0], ds.logits().argmax(axis=1))
    assert softlabel.open_dataset(sets["sampled"]).sampled().shape == (ROWS, 8)
    # A hand-edited manifest, a changed part, a part name leaving the folder: refused, naming the file.
    bad = tmp_path / "bad"
    subprocess.run(["cp", "-r", str(sets["dense"]), str(bad)], check=True)
    m = json.loads((bad / "_manifest.json").read_text())
    m["temperature"] = 2.0
    (bad / "_manifest.json").write_text(json.dumps(m))
    with pytest.raises(softlabel.SchemaError, match="checksum does not match"):
        softlabel.open_dataset(bad)
    m["parts"][0]["file"] = "../a.parquet"
    m["checksum"] = softlabel.checksum_of(m)
    (bad / "_manifest.json").write_text(json.dumps(m))
    with pytest.raises(softlabel.SchemaError, match="not a file of the dataset's folder"):
        softlabel.open_dataset(bad)
    m["parts"][0]["file"] = "part-00000.parquet"
    m["checksum"] = softlabel.checksum_of(m)
    (bad / "_manifest.json").write_text(json.dumps(m))
    part = bad / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[100] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(softlabel.SchemaError, match="part-00000.parquet: sha256 does not match"):
        softlabel.open_dataset(bad)
    m["schema_version"] = "3.0"
    m["checksum"] = softlabel.checksum_of(m)
    (bad / "_manifest.json").write_text(json.dumps(m))
    with pytest.raises(softlabel.SchemaError, match="schema version '3.0'"):
        softlabel.open_dataset(bad)


@pytest.mark.parametrize("form", ["dense", "topk", "sampled"])
@pytest.mark.parametrize("t,alpha", [(4.0, 0.7), (4.0, 1.0)])
def test_losses_equal_the_rust_losses(sets, tmp_path, form, t, alpha):
    ds = softlabel.open_dataset(sets[form])
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(ROWS, 10)) * 3).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    rust = json.loads(run("loss", "--labels", sets[form], "--logits", tmp_path / "z.npy", "-T", t, "--alpha", alpha,
                          "--per-row", "--json").stdout)
    ours = softlabel.kd_loss(z, ds, temperature=t, alpha=alpha)
    # The issue asks for 1e-6; measured: 1.4e-14 to 2.1e-14 (float64 rounding; T and alpha as float32
    # on both sides), so the check is kept far tighter.
    np.testing.assert_allclose(ours, rust["per_row"], rtol=0, atol=1e-9)
    assert abs(ours.mean() - rust["mean"]) < 1e-9
    # The gradient by central differences (float64 logits; the loss is smooth).
    loss, g = softlabel.kd_loss(z[:5], ds, rows=slice(0, 5), temperature=t, alpha=alpha, grad=True)
    h = 1e-3
    for (i, j) in [(0, 0), (1, 3), (4, 9)]:
        zp, zm = z[:5].astype(np.float64).copy(), z[:5].astype(np.float64).copy()
        zp[i, j] += h
        zm[i, j] -= h
        lp = softlabel.kd_loss(zp.astype(np.float32), ds, rows=slice(0, 5), temperature=t, alpha=alpha)[i]
        lm = softlabel.kd_loss(zm.astype(np.float32), ds, rows=slice(0, 5), temperature=t, alpha=alpha)[i]
        # float32 logits move by h exactly enough for a 1e-3-level check.
        assert abs((lp - lm) / (float(np.float32(z[i, j] + h)) - float(np.float32(z[i, j] - h))) - g[i, j]) < 2e-3


def test_torch_losses_equal_numpy_and_a_torch_student_trains(sets):
    torch = pytest.importorskip("torch")
    from softlabel.torch import SoftLabelDataset

    rng = np.random.default_rng(6)
    z = (rng.normal(size=(64, 10)) * 3).astype(np.float32)
    for form in ["dense", "topk", "sampled"]:
        ds = softlabel.open_dataset(sets[form])
        data = SoftLabelDataset(ds)
        x, target = data[:64]
        zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        loss = data.loss(zt, target, alpha=0.7)
        loss.backward()
        want, g = softlabel.kd_loss(z, ds, rows=slice(0, 64), alpha=0.7, grad=True)
        assert abs(loss.item() - want.mean()) < 1e-9, form
        np.testing.assert_allclose(zt.grad.numpy(), g / 64, rtol=0, atol=1e-9)
    # A PyTorch student from the dense labels: softmax regression, 100 epochs of Adam, full batch.
    data = SoftLabelDataset(softlabel.open_dataset(sets["dense"]))
    torch.manual_seed(0)
    model = torch.nn.Linear(784, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, target = data[:]
    for _ in range(100):
        opt.zero_grad()
        data.loss(model(x.reshape(len(x), -1) / 255), target, alpha=0.9).backward()
        opt.step()
    test = softlabel.open_dataset(sets["test"])
    xt = torch.as_tensor(test.inputs().reshape(len(test), -1), dtype=torch.float32) / 255
    acc = (model(xt).argmax(1).numpy() == test.labels()).mean()
    print(f"torch softmax regression on 1000 soft-labeled digits: {acc:.3f} on 1000 others")
    assert acc > 0.8, acc


def test_a_numpy_student_trains_from_soft_labels(sets):
    ds, test = softlabel.open_dataset(sets["dense"]), softlabel.open_dataset(sets["test"])
    x = ds.inputs().reshape(len(ds), -1).astype(np.float64) / 255
    w, b = np.zeros((784, 10)), np.zeros(10)
    for _ in range(100):
        loss, g = softlabel.kd_loss((x @ w + b).astype(np.float32), ds, temperature=4.0, alpha=0.9, grad=True)
        w -= 0.5 * x.T @ g / len(x)
        b -= 0.5 * g.mean(axis=0)
    xt = test.inputs().reshape(len(test), -1) / 255
    acc = ((xt @ w + b).argmax(1) == test.labels()).mean()
    print(f"numpy softmax regression: final loss {loss.mean():.4f}, {acc:.3f} on 1000 other digits")
    # Measured: 0.837 (a linear model on 1000 digits, plain gradient descent).
    assert acc > 0.8, acc
