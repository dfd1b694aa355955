#!/usr/bin/env python3
"""The Python peer for `softlabel precompute`: what a user would write without softlabel. Reads the
Parquet input in batches with pyarrow, runs onnxruntime, softens with numpy (float64, like softlabel),
and writes the same columns with pyarrow's ParquetWriter (zstd). Used by scripts/bench.

    bench_peer_precompute.py TEACHER.onnx DATA.parquet OUT.parquet --temperature 4 --batch-size 256 --threads 1
"""
import argparse

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(a.teacher, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    shape[0] = -1
    writer = None
    for batch in pq.ParquetFile(a.data).iter_batches(batch_size=a.batch_size, columns=["id", "image", "label"]):
        images = batch.column("image")
        x = images.values.to_numpy().reshape(len(batch), -1)
        feed = x.astype(np.uint8 if "uint8" in inp.type else np.float32).reshape(shape)
        logits = sess.run(None, {inp.name: feed})[0]
        z = logits.astype(np.float64) / a.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        k = logits.shape[1]
        table = pa.table({
            "id": batch.column("id"),
            "label": batch.column("label"),
            "input": images,
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1), pa.float32()), k),
            "soft": pa.FixedSizeListArray.from_arrays(pa.array(p.astype(np.float32).reshape(-1)), k),
        })
        if writer is None:
            writer = pq.ParquetWriter(a.out, table.schema, compression="zstd", use_dictionary=["label"])
        writer.write_table(table, row_group_size=65536)
    writer.close()


if __name__ == "__main__":
    main()
