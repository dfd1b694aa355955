"""Crash safety at test-suite size: scripts/crash-test with 3 seeded trials of SIGKILL + resume on real MNIST
(the acceptance run uses 20 trials on the 60k training split)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_crash_test_three_trials():
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "crash-test"), "--trials", "3", "--seed", "7",
         "--data", str(ROOT / "data" / "mnist" / "test.parquet"), "--rows-per-part", "1000", "--batch-size", "300"],
        capture_output=True, text=True, env=env,
    )
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed, 0 failed" in r.stdout
