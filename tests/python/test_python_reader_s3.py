"""The Python reader on object storage: a soft-label dataset uploaded to a real S3-compatible server
(moto's standalone server from PyPI, an HTTP server on 127.0.0.1 started here, not an in-process mock of
the client) opens by URL through pyarrow's S3 filesystem, with the same checks and the same arrays as
from disk; a part changed on the server is refused, and a prefix without a dataset is named."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from softlabel_testing import moto_server

import softlabel

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))


@pytest.fixture(scope="module")
def server():
    with moto_server() as port:
        yield f"127.0.0.1:{port}"


def s3(endpoint, key="test", secret="test"):
    return pafs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=endpoint, scheme="http",
                             region="us-east-1", allow_bucket_creation=True)


def test_a_dataset_on_s3_opens_by_url_with_the_same_checks(server, tmp_path):
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 500)
    pq.write_table(t, tmp_path / "x.parquet")
    local = tmp_path / "labels"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", ROOT / "data" / "teachers" / "mnist_cnn.onnx",
                    "--data", tmp_path / "x.parquet", "--input-column", "image", "-T", "4", "--top-k", "3",
                    "--rows-per-part", "200", "--out", local], check=True)
    fs = s3(server)
    fs.create_dir("team-labels")
    pafs.copy_files(str(local), "team-labels/mnist/labels", destination_filesystem=fs)
    remote = softlabel.open_dataset("team-labels/mnist/labels", filesystem=fs)
    disk = softlabel.open_dataset(local)
    assert len(remote.parts) == 3 and len(remote) == 500
    np.testing.assert_array_equal(remote.ids(), disk.ids())
    np.testing.assert_array_equal(remote.topk().p, disk.topk().p)
    np.testing.assert_array_equal(remote.inputs(), disk.inputs())
    # The URL form (credentials from the standard environment variables, the endpoint in the query).
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        url = f"s3://team-labels/mnist/labels?endpoint_override={server}&scheme=http"
        by_url = softlabel.open_dataset(url)
        np.testing.assert_array_equal(by_url.ids(), disk.ids())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # A part changed on the server: its sha256 no longer matches the manifest.
    name = Path(remote.parts[1]).name
    data = bytearray((local / name).read_bytes())
    data[200] ^= 1
    with fs.open_output_stream(f"team-labels/mnist/labels/{name}") as f:
        f.write(bytes(data))
    with pytest.raises(softlabel.SchemaError, match=f"{name}: sha256 does not match the manifest"):
        softlabel.open_dataset("team-labels/mnist/labels", filesystem=fs)
    # A prefix holding no dataset: the error names the manifest it looked for. (Credentials are not
    # checked here: moto's server accepts any unless IAM auth is set up, so a wrong one cannot fail.)
    with pytest.raises(softlabel.SchemaError, match="team-labels/mnist/other/_manifest.json: no manifest"):
        softlabel.open_dataset("team-labels/mnist/other", filesystem=fs)
