#!/usr/bin/env python3
"""Trains the SpamAssassin teacher (a text classifier of two inputs, as BERT-style models take them) on
make_spam.py's train.parquet with PyTorch CPU and exports it to ONNX with int64 inputs `input_ids` and
`attention_mask`, both [batch, 256], and logits [batch, 2].

    python scripts/train_spam_teacher.py --data data/spam --out data/teachers/spam_text.onnx

Embedding(16002, 64, padding_idx=0), then the mean and the max over the positions the attention mask marks
(masked positions take no part, whatever their ids), concatenated -> Linear 128 -> ReLU -> Dropout 0.2 ->
Linear 2. Adam 1e-3, batch 64, 8 epochs, seed 0.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn


class TextClassifier(nn.Module):
    def __init__(self, vocab, dim=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(2 * dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 2))

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        e = self.embed(input_ids)
        mean = (e * m).sum(1) / m.sum(1).clamp(min=1.0)
        mx = (e + (m - 1.0) * 1e4).amax(1)
        return self.head(torch.cat([mean, mx], dim=1))


def load(path):
    t = pq.read_table(path)
    ids = np.stack(t.column("ids").to_numpy(zero_copy_only=False)).astype(np.int64)
    mask = np.stack(t.column("mask").to_numpy(zero_copy_only=False)).astype(np.int64)
    y = t.column("label").to_numpy().astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    vocab = len(json.loads((a.data / "vocab.json").read_text()))
    xi, xm, y = load(a.data / "train.parquet")
    ti, tm, ty = load(a.data / "test.parquet")
    model = TextClassifier(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    log = []
    for epoch in range(a.epochs):
        model.train()
        start = time.time()
        perm = torch.randperm(len(y))
        for b in range(0, len(y), 64):
            idx = perm[b:b + 64]
            loss = nn.functional.cross_entropy(model(xi[idx], xm[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            errors = int((model(ti, tm).argmax(1) != ty).sum())
        log.append({"epoch": epoch + 1, "test_errors": errors, "test_rows": len(ty), "seconds": time.time() - start})
        print(json.dumps(log[-1]), flush=True)
    model.eval()
    torch.onnx.export(
        model, (ti[:2], tm[:2]), str(a.out), input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    a.out.with_suffix(".train.log").write_text("\n".join(json.dumps(l) for l in log) + "\n")


if __name__ == "__main__":
    main()
