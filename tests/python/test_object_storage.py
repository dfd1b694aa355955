"""softlabel's own commands on object storage: a real S3-compatible server (moto's standalone server
from PyPI, an HTTP server on 127.0.0.1 started here, not an in-process mock of the client) with IAM
authentication on, so a wrong credential really fails.

- precompute --out s3://... writes the same part bytes as on disk (one part large enough for a
  multipart upload), and train/verify/inspect/eval --labels s3://... read it: the same weights as from
  the local copy, in memory and streamed under --memory-budget;
- precompute --data s3://... reads Parquet input by URL; merge takes shards by URL and writes to a URL;
- kill -9 during an upload, then --resume: the objects equal an uninterrupted run's;
- a second writer is refused naming the first; a wrong credential exits 1 with one line naming the URL;
- a manifest can only name objects under its own prefix.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from softlabel_testing import moto_server

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"
TRAIN = ROOT / "data" / "mnist" / "train.parquet"
TEST = ROOT / "data" / "mnist" / "test.parquet"

boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def server():
    """moto_server with IAM auth after the first 5 requests, which create a user, its key and a policy."""
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as port:
        endpoint = f"http://127.0.0.1:{port}"
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                  aws_secret_access_key="setup")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="team")
        key = iam.create_access_key(UserName="team")["AccessKey"]
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        arn = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
        iam.attach_user_policy(UserName="team", PolicyArn=arn)
        creds = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="team")
        env = dict(os.environ, AWS_ENDPOINT=endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1", **creds)
        yield {"s3": s3, "env": env}


def run(server, *args, check=True, env=None):
    r = subprocess.run([BIN, "--quiet", *map(str, args)], env=env or server["env"], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{args}: exit {r.returncode}: {r.stderr}")
    return r


def precompute(server, data, out, *extra, **kw):
    return run(server, "precompute", "--teacher", TEACHER, "--data", data, "--input-column", "image", "-T", "4",
               "--out", out, *extra, **kw)


def objects(server, prefix):
    """name -> sha256 of every object directly below s3://team/PREFIX."""
    s3 = server["s3"]
    listed = s3.list_objects_v2(Bucket="team", Prefix=prefix + "/").get("Contents", [])
    return {o["Key"][len(prefix) + 1:]: hashlib.sha256(s3.get_object(Bucket="team", Key=o["Key"])["Body"].read())
            .hexdigest() for o in listed}


def local_files(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).iterdir()}


def without_manifest_times(m):
    m = json.loads(m)
    m.pop("created_by", None)
    return m


def test_precompute_to_s3_then_train_from_it_equals_the_local_copy(server, tmp_path):
    # 60,000 rows in 2 parts: the first (~9.5 MB) goes up as a multipart upload, the second in one PUT.
    precompute(server, TRAIN, "s3://team/mnist", "--rows-per-part", "40000")
    precompute(server, TRAIN, tmp_path / "local", "--rows-per-part", "40000")
    remote = objects(server, "mnist")
    assert sorted(remote) == ["_manifest.json", "part-00000.parquet", "part-00001.parquet"]  # no journal, no lock
    disk = local_files(tmp_path / "local")
    for part in ("part-00000.parquet", "part-00001.parquet"):
        assert remote[part] == disk[part], part
    assert (tmp_path / "local" / "part-00000.parquet").stat().st_size > 8 << 20  # multipart indeed
    body = server["s3"].get_object(Bucket="team", Key="mnist/_manifest.json")["Body"].read()
    assert without_manifest_times(body) == without_manifest_times((tmp_path / "local" / "_manifest.json").read_text())

    assert "ok (60000 rows in 2 part(s)" in run(server, "verify", "s3://team/mnist").stdout
    info = json.loads(run(server, "inspect", "s3://team/mnist", "--json").stdout)
    assert info["rows"] == 60000
    # Training from the URL gives the same weights as from the local copy: in memory, and streamed by
    # range requests in windows under a memory budget far below the dataset.
    for extra in ([], ["--memory-budget", "20"]):
        a, b = tmp_path / f"from_s3{len(extra)}", tmp_path / f"from_disk{len(extra)}"
        run(server, "train", "--labels", "s3://team/mnist", "--epochs", "1", "--out", a, *extra)
        run(server, "train", "--labels", tmp_path / "local", "--epochs", "1", "--out", b, *extra)
        assert (a / "student.safetensors").read_bytes() == (b / "student.safetensors").read_bytes(), extra
    ev = json.loads(run(server, "eval", "--student", tmp_path / "from_s30", "--data", TRAIN,
                        "--labels", "s3://team/mnist", "--json").stdout)
    ev_disk = json.loads(run(server, "eval", "--student", tmp_path / "from_s30", "--data", TRAIN,
                             "--labels", tmp_path / "local", "--json").stdout)
    assert ev == ev_disk and ev["teacher_rows"] == 60000 and ev["teacher_agreement"] > 0.9


def test_parquet_input_by_url_and_merging_shards_at_urls(server, tmp_path):
    s3 = server["s3"]
    s3.upload_file(str(TEST), "team", "raw/test.parquet")
    precompute(server, "s3://team/raw/test.parquet", tmp_path / "from_url")
    precompute(server, TEST, tmp_path / "from_disk")
    assert local_files(tmp_path / "from_url")["part-00000.parquet"] == \
        local_files(tmp_path / "from_disk")["part-00000.parquet"]
    # A prefix of Parquet objects is read like a folder of them.
    precompute(server, "s3://team/raw", tmp_path / "from_prefix")
    assert local_files(tmp_path / "from_prefix")["part-00000.parquet"] == \
        local_files(tmp_path / "from_disk")["part-00000.parquet"]
    # Shards written to URLs, merged from URLs to a URL: the same objects as the local merge's files.
    for i in (0, 1):
        precompute(server, TEST, f"s3://team/shards/{i}", "--shard", f"{i}/2", "--rows-per-part", "3000")
        precompute(server, TEST, tmp_path / f"shard{i}", "--shard", f"{i}/2", "--rows-per-part", "3000")
    run(server, "merge", "--out", "s3://team/merged", "s3://team/shards/0", "s3://team/shards/1")
    run(server, "merge", "--out", tmp_path / "merged", tmp_path / "shard0", tmp_path / "shard1")
    remote, disk = objects(server, "merged"), local_files(tmp_path / "merged")
    assert sorted(remote) == sorted(disk) and len(remote) == 5
    assert all(remote[n] == disk[n] for n in disk if n != "_manifest.json")
    assert "ok (10000 rows" in run(server, "verify", "s3://team/merged").stdout


def test_kill_9_during_an_upload_then_resume_gives_identical_objects(server, tmp_path):
    s3 = server["s3"]
    args = ("--rows-per-part", "36000")  # parts of ~8.6 MB: multipart uploads
    proc = subprocess.Popen([BIN, "--quiet", "precompute", "--teacher", str(TEACHER), "--data", str(TRAIN),
                             "--input-column", "image", "-T", "4", "--out", "s3://team/killed", *args],
                            env=server["env"], stderr=subprocess.DEVNULL)
    # Wait until a multipart upload is in flight, then kill the writer without warning.
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if s3.list_multipart_uploads(Bucket="team", Prefix="killed/").get("Uploads"):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before an upload was seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = objects(server, "killed")
    assert "_manifest.json" not in at_kill and "part-00000.parquet" not in at_kill, sorted(at_kill)
    assert "_lock" in at_kill  # left by the killed writer: taken over, since its pid is gone
    # The unfinished multipart upload is invisible: no object looks complete. Resumed, the objects equal
    # a clean run's.
    precompute(server, TRAIN, "s3://team/killed", *args, "--resume")
    precompute(server, TRAIN, "s3://team/clean", *args)
    killed, clean = objects(server, "killed"), objects(server, "clean")
    assert sorted(killed) == ["_manifest.json", "part-00000.parquet", "part-00001.parquet"]
    assert killed == clean


def test_resume_after_committed_parts_continues_from_the_journal_on_the_store(server, tmp_path):
    s3 = server["s3"]
    args = ("--rows-per-part", "3000")
    proc = subprocess.Popen([BIN, "--quiet", "precompute", "--teacher", str(TEACHER), "--data", str(TRAIN),
                             "--input-column", "image", "-T", "4", "--out", "s3://team/journal", *args],
                            env=server["env"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team", Prefix="journal/").get("Contents", [])]
        if "journal/part-00002.parquet" in keys:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = objects(server, "journal")
    assert "_progress.json" in at_kill and "_manifest.json" not in at_kill, sorted(at_kill)
    # Without --resume the prefix is refused; with it the run continues from the journal.
    r = precompute(server, TRAIN, "s3://team/journal", *args, check=False)
    assert r.returncode == 1 and "s3://team/journal: output prefix is not empty" in r.stderr
    # Nothing committed was touched (the dead writer's lock was taken over, then released).
    assert objects(server, "journal") == {n: h for n, h in at_kill.items() if n != "_lock"}
    precompute(server, TRAIN, "s3://team/journal", *args, "--resume")
    precompute(server, TRAIN, "s3://team/journal_clean", *args)
    after = objects(server, "journal")
    assert after == objects(server, "journal_clean") and len(after) == 21
    # Committed parts were kept, not written again.
    assert all(after[n] == h for n, h in at_kill.items() if n.startswith("part-"))
    # Resuming a finished dataset leaves it as it is.
    precompute(server, TRAIN, "s3://team/journal", *args, "--resume")
    assert objects(server, "journal") == after


def test_a_second_writer_is_refused_naming_the_first(server, tmp_path):
    s3 = server["s3"]
    lock = {"pid": 4242, "host": "trainer-7"}
    s3.put_object(Bucket="team", Key="busy/_lock", Body=json.dumps(lock).encode())
    r = precompute(server, TEST, "s3://team/busy", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "s3://team/busy is being written by pid 4242 on trainer-7" in r.stderr
    assert "s3://team/busy/_lock" in r.stderr
    assert sorted(objects(server, "busy")) == ["_lock"]  # nothing written
    # A live writer on this host (this test's own pid) is not taken over either.
    lock = {"pid": os.getpid(), "host": socket.gethostname()}
    s3.put_object(Bucket="team", Key="busy/_lock", Body=json.dumps(lock).encode())
    r = precompute(server, TEST, "s3://team/busy", check=False)
    assert r.returncode == 1 and f"is being written by pid {os.getpid()}" in r.stderr
    # Overwrite replaces softlabel's objects only: a foreign object under the prefix is refused.
    s3.delete_object(Bucket="team", Key="busy/_lock")
    precompute(server, TEST, "s3://team/busy")
    s3.put_object(Bucket="team", Key="busy/notes.txt", Body=b"mine")
    r = precompute(server, TEST, "s3://team/busy", "--overwrite", check=False)
    assert r.returncode == 1 and "holds 'notes.txt', which softlabel did not write" in r.stderr
    assert "_manifest.json" in objects(server, "busy")


def test_a_wrong_credential_is_one_clear_line_naming_the_url(server, tmp_path):
    precompute(server, TEST, "s3://team/creds")
    bad = dict(server["env"], AWS_SECRET_ACCESS_KEY="not-the-secret")
    for args in (["verify", "s3://team/creds"], ["train", "--labels", "s3://team/creds", "--out", tmp_path / "s"],
                 ["precompute", "--teacher", TEACHER, "--data", TEST, "--input-column", "image", "-T", "4",
                  "--out", "s3://team/creds2"]):
        r = run(server, *args, check=False, env=bad)
        assert r.returncode == 1, args
        line = r.stderr.strip()
        assert "\n" not in line, line
        assert "s3://team/creds" in line and "access denied: check the credentials" in line, line
    # The same through --storage-option, which wins over the environment.
    r = run(server, "--storage-option", "aws_secret_access_key=nope", "verify", "s3://team/creds", check=False)
    assert r.returncode == 1 and "access denied" in r.stderr
    r = run(server, "--storage-option", "no_such_key=1", "verify", "s3://team/creds", check=False)
    assert r.returncode == 1 and "--storage-option no_such_key: not an option of s3://team" in r.stderr
    assert not (tmp_path / "s").exists()
    # A store that does not answer: retried, then one line naming the URL and the retries.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = dict(server["env"], AWS_ENDPOINT=f"http://127.0.0.1:{closed}")
    r = run(server, "verify", "s3://team/creds", check=False, env=down)
    assert r.returncode == 1 and "\n" not in r.stderr.strip()
    assert "s3://team/creds/_manifest.json: object storage request failed" in r.stderr and "retries" in r.stderr


def test_a_manifest_cannot_name_objects_outside_its_prefix(server, tmp_path):
    s3 = server["s3"]
    precompute(server, TEST, "s3://team/victim")
    precompute(server, TEST, "s3://team/crafted")
    body = json.loads(s3.get_object(Bucket="team", Key="crafted/_manifest.json")["Body"].read())
    body["parts"][0]["file"] = "../victim/part-00000.parquet"
    s3.put_object(Bucket="team", Key="crafted/_manifest.json", Body=json.dumps(body).encode())
    r = run(server, "verify", "s3://team/crafted", check=False)
    assert r.returncode == 1
    assert "s3://team/crafted/_manifest.json" in r.stderr and "part-NNNNN.parquet" in r.stderr, r.stderr
