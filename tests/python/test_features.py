"""`precompute --features`: the MNIST CNN teacher's intermediate values stored as `feature.NAME` columns
equal Python onnxruntime's on a copy of the model with those values as outputs (made with the onnx
package), pooled by numpy (global average / max) within 1e-5; the random projection follows the rule in
SCHEMA.md (replicated here in numpy) and is seeded; shards merge to the whole run, views get features per
view, `--no-inputs` keeps them; verify passes, and pyarrow, pandas, polars and DuckDB read the columns."""
import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

import softlabel

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
FC, CONV = "/Relu_4_output_0", "/Relu_3_output_0"    # [256] and [64, 8, 8] a row (inspect-teacher)


def run(*args):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 600)
    pq.write_table(t, tmp / "x.parquet")
    x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).astype(np.float32).reshape(-1, 1, 28, 28)
    m = onnx.load(str(TEACHER))
    for name in [FC, CONV]:
        vi = onnx.ValueInfoProto()
        vi.name = name
        m.graph.output.append(vi)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": x})))
    return tmp, t.column("id").to_numpy(), outs


def common(tmp):
    return ["--teacher", TEACHER, "-T", "4", "--data", tmp / "x.parquet", "--input-column", "image"]


def splitmix64(x):
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)).astype(np.uint64)
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)).astype(np.uint64)
        return x ^ (x >> np.uint64(31))


def projection(seed, width, dim):
    """SCHEMA.md's rule: entry k = i * dim + j is a Box-Muller normal from splitmix64(seed + 2k) and
    splitmix64(seed + 2k + 1), divided by sqrt(dim)."""
    k = np.arange(width * dim, dtype=np.uint64)
    with np.errstate(over="ignore"):
        a = splitmix64((np.uint64(seed) + np.uint64(2) * k).astype(np.uint64))
        b = splitmix64((np.uint64(seed) + np.uint64(2) * k + np.uint64(1)).astype(np.uint64))
    ua = ((a >> np.uint64(11)) + np.uint64(1)).astype(np.float64) / 2.0**53
    ub = (b >> np.uint64(11)).astype(np.float64) / 2.0**53
    z = np.sqrt(-2 * np.log(ua)) * np.cos(2 * np.pi * ub) / np.sqrt(dim)
    return z.astype(np.float32).reshape(width, dim)


def test_features_equal_onnxruntime_pooled_and_projected(data, tmp_path):
    tmp, ids, outs = data
    a, b, c = tmp_path / "avg", tmp_path / "max", tmp_path / "proj"
    run("precompute", *common(tmp), "--features", f"{FC},{CONV}", "--out", a)
    run("precompute", *common(tmp), "--features", CONV, "--feature-pool", "max", "--out", b)
    run("precompute", *common(tmp), "--features", CONV, "--feature-pool", "none", "--feature-dim", "32",
        "--feature-seed", "7", "--out", c)
    ds = softlabel.open_dataset(a)
    np.testing.assert_array_equal(ds.ids(), ids)
    np.testing.assert_allclose(ds.features(FC), outs[FC], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ds.features(CONV), outs[CONV].mean(axis=(2, 3)), rtol=0, atol=1e-5)
    np.testing.assert_allclose(softlabel.open_dataset(b).features(CONV), outs[CONV].max(axis=(2, 3)), rtol=0, atol=1e-5)
    m = json.loads((c / "_manifest.json").read_text())
    assert m["schema_version"] == "2.9"
    assert m["features"] == [{"name": CONV, "column": "feature." + CONV, "shape": [64, 8, 8], "pool": "none",
                              "projection_seed": 7, "width": 32}]
    # Feature i's projection is seeded by feature_seed XOR (i << 48): here the only feature, i = 0.
    want = outs[CONV].reshape(len(ids), -1).astype(np.float64) @ projection(7, 4096, 32).astype(np.float64)
    np.testing.assert_allclose(softlabel.open_dataset(c).features(CONV), want, rtol=1e-4, atol=1e-4)
    for d in (a, b, c):
        assert "ok" in run("verify", d).stdout
    # The readers users have.
    col = "feature." + FC
    assert pd.read_parquet(a)[col].iloc[0].shape == (256,)
    assert pl.read_parquet(str(a / "*.parquet"))[col].dtype == pl.Array(pl.Float32, 256)
    query = "SELECT count(*) FROM read_parquet('%s/*.parquet') WHERE len(\"%s\") = 256" % (a, col)
    n = duckdb.sql(query).fetchall()[0][0]
    assert n == len(ids)


def test_features_with_shards_views_and_no_inputs(data, tmp_path):
    tmp, ids, outs = data
    whole, s0, s1, merged = (tmp_path / n for n in ("whole", "s0", "s1", "merged"))
    run("precompute", *common(tmp), "--features", FC, "--rows-per-part", "256", "--out", whole)
    run("precompute", *common(tmp), "--features", FC, "--shard", "0/2", "--out", s0)
    run("precompute", *common(tmp), "--features", FC, "--shard", "1/2", "--out", s1)
    run("merge", "--out", merged, s0, s1)
    w = pq.read_table(sorted(whole.glob("part-*.parquet"))).sort_by("id")
    g = pq.read_table(sorted(merged.glob("part-*.parquet"))).sort_by("id")
    assert w.column("feature." + FC).to_pylist() == g.column("feature." + FC).to_pylist()
    views, bare = tmp_path / "views", tmp_path / "bare"
    run("precompute", *common(tmp), "--features", FC, "--views", "3", "--out", views)
    v = softlabel.open_dataset(views)
    f, view = v.features(FC), v.views()["view"]
    np.testing.assert_allclose(f[view == 0], outs[FC], rtol=0, atol=1e-5)          # view 0: the image as it is
    assert np.abs(f[view == 1] - outs[FC]).max() > 1e-3                            # other views: their own
    run("precompute", *common(tmp), "--features", FC, "--no-inputs", "--out", bare)
    assert "input" not in pq.read_schema(sorted(bare.glob("part-*.parquet"))[0]).names
    np.testing.assert_allclose(softlabel.open_dataset(bare).features(FC), outs[FC], rtol=0, atol=1e-5)
    r = subprocess.run([BIN, "precompute", *map(str, common(tmp)), "--features", "nope", "--out", str(tmp_path / "no")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--features 'nope': the model computes no value of that name" in r.stderr


def test_relation_losses_train_from_stored_features(data, tmp_path):
    """`train --rkd` / `--sp` learn from a stored feature with no teacher loaded: the relation term is
    logged per epoch and is part of the loss, the same seed gives the same weights, the label order
    does not matter (features are joined by id), and a missing feature or a student without an
    embedding is refused with one line."""
    labels = tmp_path / "labels"
    src = tmp_path / "src.parquet"
    pq.write_table(pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 1000), src)
    run("precompute", "--teacher", TEACHER, "--data", src, "--input-column", "image", "-T", "4",
        "--features", f"{FC},{CONV}", "--feature-pool", "avg", "--rows-per-part", "300", "--out", labels)
    logs = {}
    for flag, value in [("--rkd", FC), ("--sp", f"{CONV}:1000"), ("--rkd", f"{FC}:0,0")]:
        outs = []
        for i in range(2):
            out = tmp_path / f"s{flag}{value.replace('/', '_').replace(':', '_')}{i}"
            run("train", "--labels", labels, "--hidden", "64", "--epochs", "2", "--batch-size", "50",
                flag, value, "--out", out)
            outs.append(out)
        assert (outs[0] / "student.safetensors").read_bytes() == (outs[1] / "student.safetensors").read_bytes()
        log = [json.loads(line) for line in (outs[0] / "train_log.jsonl").read_text().splitlines()]
        logs[(flag, value)] = log
        info = json.loads((outs[0] / "student.json").read_text())
        assert info["settings"]["relations"][0]["feature"] == value.split(":")[0]
    for (flag, value), log in logs.items():
        rel = [e["relation_loss"] for e in log]
        assert all(np.isfinite(r) for r in rel), (flag, value, rel)
        if value.endswith(":0,0"):
            assert rel == [0.0, 0.0]
        else:
            assert all(r > 0 for r in rel) and all(e["train_loss"] > r for e, r in zip(log, rel))
    # Zero weights leave KD's own loss (the relation term adds nothing to the logged loss).
    plain = tmp_path / "plain"
    run("train", "--labels", labels, "--hidden", "64", "--epochs", "2", "--batch-size", "50", "--out", plain)
    kd_log = [json.loads(line) for line in (plain / "train_log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([e["train_loss"] for e in logs[("--rkd", f"{FC}:0,0")]],
                               [e["train_loss"] for e in kd_log], rtol=1e-6)
    # Refusals.
    def refused(*args):
        r = subprocess.run([BIN, "--quiet", "train", "--labels", labels, "--epochs", "1", "--out",
                            tmp_path / "bad", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
        return r.stderr
    err = refused("--rkd", "/nope")
    assert "stores no feature '/nope'; it stores /Relu_4_output_0, /Relu_3_output_0" in err
    assert "needs a student embedding" in refused("--sp", FC, "--hidden", "")
    assert "give 2 finite weights" in refused("--rkd", f"{FC}:1")
    plain_labels = tmp_path / "nofeat"
    run("precompute", "--teacher", TEACHER, "--data", src, "--input-column", "image", "-T", "4", "--out", plain_labels)
    r = subprocess.run([BIN, "--quiet", "train", "--labels", plain_labels, "--sp", FC, "--out", tmp_path / "b2"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "stores no teacher features" in r.stderr and "precompute --features" in r.stderr


def test_fitnets_hint_trains_a_regressor_that_is_checkpointed_and_never_exported(data, tmp_path):
    """`train --hint`: the regressor is trained with the student, saved in checkpoints (a run killed
    after a checkpoint resumes to the uninterrupted run's weights exactly) and left out of the student."""
    import signal
    import time
    labels = tmp_path / "labels"
    src = tmp_path / "src.parquet"
    pq.write_table(pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 2000), src)
    run("precompute", "--teacher", TEACHER, "--data", src, "--input-column", "image", "-T", "4",
        "--features", FC, "--out", labels)
    args = ["train", "--labels", labels, "--hidden", "64", "--epochs", "30", "--batch-size", "20",
            "--threads", "2", "--hint", f"{FC}:10"]
    whole = tmp_path / "whole"
    run(*args, "--out", whole)
    log = [json.loads(line) for line in (whole / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["relation_loss"] < log[0]["relation_loss"]  # the regressor and embedding learn the hint
    killed = tmp_path / "killed"
    proc = subprocess.Popen([BIN, "--quiet", *map(str, args), "--out", str(killed)])
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads((killed / "checkpoint.json").read_text())["epochs_done"] >= 2:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "student.json").exists(), "the run finished before it was killed: the test proves nothing"
    run(*args, "--out", killed, "--resume")
    assert (whole / "student.safetensors").read_bytes() == (killed / "student.safetensors").read_bytes()
    # The student holds only its own layers: no regressor.
    header_len = int.from_bytes((whole / "student.safetensors").read_bytes()[:8], "little")
    names = json.loads((whole / "student.safetensors").read_bytes()[8:8 + header_len]).keys()
    assert not any(n.startswith("aux") for n in names), sorted(names)
    assert json.loads((whole / "student.json").read_text())["settings"]["relations"] == \
        [{"feature": FC, "kind": "hint", "weight": 10.0}]


def test_attention_transfer_and_terms_on_chosen_layers(data, tmp_path):
    """`precompute --feature-pool attention` stores the map's attention (the channel mean of the squares,
    numpy within 1e-5, schema 2.10); `train --at` trains a cnn student from it or from the whole map
    (same targets: the same losses within float32 rounding), on the block nearest the teacher's 8x8 map
    by default or the one `@blockN` names; `--hint FEATURE@N` reads hidden layer N; the refusals name
    what the student has."""
    tmp, ids, outs = data
    att, whole = tmp_path / "att", tmp_path / "whole"
    run("precompute", *common(tmp), "--features", CONV, "--feature-pool", "attention", "--out", att)
    run("precompute", *common(tmp), "--features", f"{CONV},{FC}", "--feature-pool", "none", "--out", whole)
    m = json.loads((att / "_manifest.json").read_text())
    assert m["schema_version"] == "2.10"
    assert m["features"] == [{"name": CONV, "column": "feature." + CONV, "shape": [64, 8, 8], "pool": "attention",
                              "width": 64}]
    want = (outs[CONV].astype(np.float64) ** 2).mean(axis=1).reshape(len(ids), 64)
    np.testing.assert_allclose(softlabel.open_dataset(att).features(CONV), want, rtol=1e-5, atol=1e-5)
    assert "ok" in run("verify", att).stdout
    cnn = ["--student", "cnn", "--channels", "4,8", "--hidden", "", "--epochs", "2", "--batch-size", "50"]
    logs = {}
    for name, labels, at in [("att", att, CONV), ("whole", whole, CONV), ("b1", att, f"{CONV}:500@block1")]:
        out = tmp_path / f"at-{name}"
        run("train", "--labels", labels, *cnn, "--at", at, "--out", out)
        logs[name] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        info = json.loads((out / "student.json").read_text())
        assert info["settings"]["relations"][0]["kind"] == "at"
    for log in logs.values():
        assert all(0 < e["relation_loss"] < e["train_loss"] for e in log), log
    # The stored attention map and the whole map give the same targets: the same run within rounding.
    np.testing.assert_allclose([e["relation_loss"] for e in logs["att"]],
                               [e["relation_loss"] for e in logs["whole"]], rtol=1e-3)
    # Block 1 (14x14, the teacher's map upsampled) is another term than the default block 2 (7x7).
    assert abs(logs["b1"][0]["relation_loss"] - logs["att"][0]["relation_loss"]) > 1e-4
    # Two terms at once: each is logged by name, and they sum to relation_loss.
    both = tmp_path / "both"
    run("train", "--labels", whole, *cnn, "--at", CONV, "--hint", f"{FC}:10@block2", "--out", both)
    for e in (json.loads(line) for line in (both / "train_log.jsonl").read_text().splitlines()):
        assert sorted(e["term_losses"]) == [f"at {CONV}@block2", f"hint {FC}@block2"], e
        assert abs(sum(e["term_losses"].values()) - e["relation_loss"]) < 1e-9 * e["relation_loss"], e
    # A flag given twice adds two terms (AT on both blocks, as RepDistiller sums its groups); the same
    # term twice (the default block named again) is refused.
    blocks = tmp_path / "blocks"
    run("train", "--labels", att, *cnn, "--at", f"{CONV}@block1", "--at", CONV, "--out", blocks)
    e = json.loads((blocks / "train_log.jsonl").read_text().splitlines()[0])
    assert sorted(e["term_losses"]) == [f"at {CONV}@block1", f"at {CONV}@block2"], e
    r = subprocess.run([BIN, "--quiet", "train", "--labels", att, *cnn, "--at", CONV, "--at", f"{CONV}@block2",
                        "--out", tmp_path / "twice"], capture_output=True, text=True)
    assert r.returncode == 1 and f"--at {CONV}@block2 is given twice" in r.stderr, r.stderr
    # A hint on hidden layer 1 of two is another term than on the embedding (hidden layer 2).
    hints = {}
    for layer in ["", "@1", "@2", "@embedding"]:
        out = tmp_path / f"hint{layer.replace('@', '_')}"
        run("train", "--labels", whole, "--hidden", "32,16", "--epochs", "1", "--batch-size", "50",
            "--hint", f"{FC}:10{layer}", "--out", out)
        hints[layer] = (out / "student.safetensors").read_bytes()
    assert hints[""] == hints["@2"] == hints["@embedding"] and hints["@1"] != hints[""]

    def refused(*args):
        r = subprocess.run([BIN, "--quiet", "train", "--labels", whole, "--epochs", "1", "--out",
                            tmp_path / "bad", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
        return r.stderr
    assert "--hint /Relu_4_output_0@3: the student has no such layer; it has @1 [32], @2 [16], @embedding [16]" \
        in refused("--hidden", "32,16", "--hint", f"{FC}@3")
    assert "layer 'top' is not embedding, N" in refused("--hint", f"{FC}@top")
    assert "attention transfer needs a convolution block of a cnn student" in refused("--hidden", "32", "--at", CONV)
    cnn1 = cnn[:cnn.index("--epochs")]
    assert "--at /Relu_4_output_0: needs a stored conv map [C, H, W]" in refused(*cnn1, "--at", FC)
    err = refused(*cnn1, "--at", f"{CONV}@block3")
    assert "the student has no such layer; it has @block1 [4, 14, 14], @block2 [8, 7, 7], @embedding [8]" in err


def test_precompute_with_features_resumes_after_kill_to_the_same_parts(tmp_path):
    """kill -9 after committed parts, then `--resume`: the parts, features included, equal an
    uninterrupted run's byte for byte (committed parts kept, not written again)."""
    import hashlib
    import signal
    import time
    args = ["precompute", "--teacher", TEACHER, "--data", ROOT / "data" / "mnist" / "train.parquet",
            "--input-column", "image", "-T", "4", "--features", f"{FC},{CONV}", "--feature-pool", "attention",
            "--rows-per-part", "2000", "--batch-size", "500", "--threads", "1"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([BIN, "--quiet", *map(str, args), "--out", str(killed)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (killed / "part-00002.parquet").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "_manifest.json").exists(), "the run finished before it was killed: the test proves nothing"
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("part-*.parquet"))}
    at_kill = digest(killed)
    assert len(at_kill) >= 3
    run(*args, "--out", killed, "--resume")
    run(*args, "--out", clean)
    after = digest(killed)
    assert after == digest(clean) and len(after) == 30
    assert all(after[n] == h for n, h in at_kill.items())
    m = json.loads((killed / "_manifest.json").read_text())
    assert [f["name"] for f in m["features"]] == [FC, CONV] and m["schema_version"] == "2.10"
    assert "ok" in run("verify", killed).stdout
