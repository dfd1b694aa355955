"""`softlabel import` with a teacher that is not ONNX: a scikit-learn model trained and run in Python on
scikit-learn's bundled digits (8x8 images, 1,797 rows: real data, no download). Its probabilities go
out as JSONL (and as Parquet and .npy), come back as a soft-label dataset that `verify` passes, whose
stored logits are log p of exactly what the model returned, and a softlabel student trained on it
agrees with the teacher on most held-out rows."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))


def run(*args, check=True):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    train, test = slice(0, 1400), slice(1400, None)
    teacher = RandomForestClassifier(n_estimators=200, random_state=0).fit(x[train], y[train])
    ids = np.arange(len(y), dtype=np.uint64) + 5000
    for name, s in [("train", train), ("test", test)]:
        table = pa.table({"id": ids[s], "input": pa.FixedSizeListArray.from_arrays(pa.array(x[s].reshape(-1)), 64),
                          "label": y[s]})
        pq.write_table(table, tmp / f"{name}.parquet")
    probs = teacher.predict_proba(x).astype(np.float64)
    return tmp, ids, probs, y, train, test


def test_jsonl_probabilities_from_a_scikit_learn_teacher_train_a_student(digits, tmp_path):
    tmp, ids, probs, y, train, test = digits
    outputs = tmp_path / "forest.jsonl"
    with open(outputs, "w") as f:
        for i, p in zip(ids, probs):
            f.write(json.dumps({"id": int(i), "probs": p.tolist()}) + "\n")
    labels, labels_test, student = tmp_path / "labels", tmp_path / "labels-test", tmp_path / "student"
    run("import", "--outputs", outputs, "--data", tmp / "train.parquet", "-T", "2", "--out", labels,
        "--teacher-name", "sklearn RandomForestClassifier", "--teacher-id", "n_estimators=200,random_state=0")
    run("import", "--outputs", outputs, "--data", tmp / "test.parquet", "-T", "2", "--out", labels_test)
    assert "ok" in run("verify", labels).stdout

    manifest = json.loads((labels / "_manifest.json").read_text())
    assert manifest["schema_version"] == "2.4"
    t = manifest["teacher"]
    assert t["file"] == "forest.jsonl" and t["output_kind"] == "probs"
    assert t["imported"] == {"format": "jsonl", "column": "probs", "rows": len(ids),
                             "teacher_name": "sklearn RandomForestClassifier",
                             "teacher_id": "n_estimators=200,random_state=0"}
    # Stored logits are log p of the model's probabilities as float32 (zeros stay -inf: no invented mass).
    stored = pq.read_table(sorted(labels.glob("part-*.parquet"))[0]).to_pandas()
    got = np.stack(stored["logits"].to_numpy())
    row = {int(i): r for r, i in enumerate(ids)}
    with np.errstate(divide="ignore"):
        want = np.log(np.array([probs[row[int(i)]] for i in stored["id"]], dtype=np.float32))
    # numpy's float32 log and Rust's f32::ln differ by at most one ulp (measured: 623 of 14,000 values).
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=2.5e-7, atol=1.5e-7)

    run("train", "--labels", labels, "--out", student, "--hidden", "64", "--epochs", "30", "--alpha", "1")
    report = json.loads(run("eval", "--student", student, "--data", labels_test, "--labels", labels_test,
                            "--json").stdout)
    teacher_acc = (probs[test].argmax(1) == y[test]).mean()
    # Measured: the forest 0.9773 on the 397 held-out digits, the student 0.9471, agreeing on 0.9597.
    print(f"forest {teacher_acc:.4f}, student {report['accuracy']:.4f}, agreement {report['teacher_agreement']:.4f}")
    assert report["teacher_accuracy"] == pytest.approx(teacher_acc, abs=1e-9)
    assert report["teacher_agreement"] > 0.9, report
    assert report["accuracy"] > 0.88, report


def test_parquet_and_npy_outputs_give_the_same_dataset_as_jsonl(digits, tmp_path):
    tmp, ids, probs, y, train, test = digits
    jsonl, parquet, npy_dir = tmp_path / "o.jsonl", tmp_path / "o.parquet", tmp_path / "npy-in"
    with open(jsonl, "w") as f:
        for i, p in zip(ids, probs):
            f.write(json.dumps({"id": int(i), "probs": p.tolist()}) + "\n")
    pq.write_table(pa.table({"id": ids, "probs": pa.FixedSizeListArray.from_arrays(
        pa.array(probs.reshape(-1)), probs.shape[1])}), parquet)
    # .npy outputs are matched by row index: data without an id column, rows in the same order.
    npy_dir.mkdir()
    np.save(npy_dir / "probs.npy", probs)
    x = pq.read_table(tmp / "train.parquet").column("input")
    pq.write_table(pa.table({"input": x}), npy_dir / "train-noid.parquet")
    out = {}
    for name, outputs, data in [("jsonl", jsonl, tmp / "train.parquet"), ("parquet", parquet, tmp / "train.parquet"),
                                ("npy", npy_dir / "probs.npy", npy_dir / "train-noid.parquet")]:
        run("import", "--outputs", outputs, "--data", data, "-T", "3", "--kind", "probs", "--out", tmp_path / name)
        t = pq.read_table(sorted((tmp_path / name).glob("part-*.parquet"))[0])
        out[name] = np.stack(t.column("logits").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(out["jsonl"], out["parquet"])
    np.testing.assert_array_equal(out["jsonl"], out["npy"])


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_topk_log_probabilities_as_apis_return_them(digits, tmp_path):
    """A logistic regression's top 3 log-probabilities a row (scikit-learn's predict_log_proba: normalised
    over all 10 classes, never -inf, as API log-probabilities are), written as vLLM / OpenAI style APIs
    return them (a {class: logprob} map, or a list of {token, logprob} with class names), come back as
    top-k labels whose stored classes and log-probabilities are exactly those and whose normaliser at T = 1
    is log 1 = 0, so the residual mass 1 - sum(top 3) is exact."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.datasets import load_digits
    tmp, ids, _, y, train, test = digits
    x, _ = load_digits(return_X_y=True)
    x = x[np.random.default_rng(0).permutation(len(y))].astype(np.float32)
    logp = LogisticRegression(max_iter=3000).fit(x[train], y[train]).predict_log_proba(x)
    probs = np.exp(logp)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    as_map, as_list = tmp_path / "top3.jsonl", tmp_path / "top3_tokens.jsonl"
    with open(as_map, "w") as f, open(as_list, "w") as g:
        for i, r in zip(ids, range(len(ids))):
            f.write(json.dumps({"id": int(i), "top_logprobs": {str(c): float(logp[r, c]) for c in top[r]}}) + "\n")
            g.write(json.dumps({"id": int(i), "top_logprobs": [{"token": NAMES[c], "logprob": float(logp[r, c])}
                                                               for c in top[r]]}) + "\n")
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["import", "--kind", "topk-log-probs", "--data", tmp / "train.parquet", "-T", "1", "--top-k", "3"]
    run(*common, "--outputs", as_map, "--num-classes", "10", "--out", a)
    run(*common, "--outputs", as_list, "--class-names", ",".join(NAMES), "--out", b)
    assert "ok" in run("verify", a).stdout
    m = json.loads((a / "_manifest.json").read_text())
    assert m["schema_version"] == "2.7" and m["teacher"]["output_kind"] == "topk-log-probs"
    assert m["form"] == {"kind": "top-k", "k": 3}
    t = pq.read_table(sorted(a.glob("part-*.parquet"))).sort_by("id")
    row = {int(i): r for r, i in enumerate(ids)}
    rows = [row[int(i)] for i in t.column("id").to_pylist()]
    index = np.stack(t.column("topk_index").to_numpy(zero_copy_only=False))
    value = np.stack(t.column("topk_logit").to_numpy(zero_copy_only=False))
    # The stored classes are the given ones (in descending order), their values the given log-probabilities
    # as float32, and the normaliser 0 (to float32 rounding of the spread residual).
    for r, ix, v in zip(rows, index, value):
        assert set(ix.tolist()) == set(top[r].tolist())
        np.testing.assert_array_equal(v, logp[r, ix].astype(np.float32))
    np.testing.assert_allclose(t.column("logsumexp_t").to_numpy(), 0.0, atol=2e-7)
    tb = pq.read_table(sorted(b.glob("part-*.parquet"))).sort_by("id")
    assert tb.column("topk_logit").to_pylist() == t.column("topk_logit").to_pylist()
    assert json.loads((b / "_manifest.json").read_text())["class_names"] == NAMES
    # A student trains on them (T = 1, the residual bucket exact).
    run("train", "--labels", a, "--out", tmp_path / "student", "--hidden", "32", "--epochs", "5", "--alpha", "1")
    # Refusals: another T (its normaliser is unknown), the dense form, a k that is not the file's.
    base = ["import", "--kind", "topk-log-probs", "--data", tmp / "train.parquet", "--outputs", as_map,
            "--num-classes", "10", "--out", tmp_path / "no"]
    for extra, expect in [(["-T", "2", "--top-k", "3"], "exact soft labels at T = 1 only"),
                          (["-T", "1", "--top-k", "5"], "top 3 log-probabilities a row: store them with --top-k 3"),
                          (["-T", "1"], "stored in the top-k form: add --top-k K")]:
        r = run(*base, *extra, check=False)
        assert r.returncode == 1 and expect in r.stderr, r.stderr
    # Rows that cannot be the top 3 of a distribution over 10 classes (their mass is too small) are refused.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": int(ids[0]), "top_logprobs": {"0": -3.0, "1": -3.0, "2": -3.0}}) + "\n")
    r = run("import", "--kind", "topk-log-probs", "--data", tmp / "train.parquet", "--outputs", bad, "--num-classes", "10",
            "-T", "1", "--top-k", "3", "--out", tmp_path / "no2", check=False)
    assert r.returncode == 1 and "bad.jsonl: line 1: the other 7 classes' mean probability" in r.stderr, r.stderr
