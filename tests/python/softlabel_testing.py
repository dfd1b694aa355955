"""Helpers shared by the Python tests."""
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def reseal(out: Path, part: Path):
    """Record `part`'s new size and sha256 in `out`'s manifest and recompute the manifest checksum with the
    recipe in SCHEMA.md: what a tool that rewrites a part consistently would do."""
    manifest = json.loads((out / "_manifest.json").read_text())
    for p in manifest["parts"]:
        if p["file"] == part.name:
            p["bytes"] = part.stat().st_size
            p["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    manifest["checksum"] = hashlib.sha256(
        json.dumps(manifest | {"checksum": ""}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2))


@contextlib.contextmanager
def moto_server(**env):
    """moto's standalone S3 server (the `moto[server]` package) on a free port of 127.0.0.1, with `env`
    added to its environment; yields the port once it accepts connections (skips without moto_server)."""
    server_bin = Path(sys.executable).parent / "moto_server"
    if not server_bin.exists():
        pytest.skip("moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(server_bin), "-H", "127.0.0.1", "-p", str(port)], env=dict(os.environ, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # at most 10 s to come up
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
