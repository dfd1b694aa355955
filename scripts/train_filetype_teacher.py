#!/usr/bin/env python3
"""Trains the file-type teacher (a byte-level CNN in the style of magika) on make_filetypes.py's
train.parquet with PyTorch CPU and exports it to ONNX with an int64 input `bytes` [batch, L].

    python scripts/train_filetype_teacher.py --data data/filetypes --out data/filetypes/teacher.onnx

Embedding(257, 32, padding_idx=256) -> [Conv1d k5 -> ReLU -> MaxPool 2] with 96 and 128 channels ->
Conv1d k5 192 -> ReLU -> global max -> Linear 192 -> ReLU -> Dropout 0.2 -> Linear K.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn


class ByteCnn(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.embed = nn.Embedding(257, 32, padding_idx=256)
        self.convs = nn.Sequential(
            nn.Conv1d(32, 96, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(96, 128, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(128, 192, 5, padding=2), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(192, 192), nn.ReLU(), nn.Dropout(0.2), nn.Linear(192, classes))

    def forward(self, x):
        h = self.convs(self.embed(x).transpose(1, 2))
        return self.head(h.amax(dim=2))


def load(path):
    t = pq.read_table(path)
    x = np.stack(t.column("bytes").to_numpy(zero_copy_only=False)).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(t.column("label").to_numpy().astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    classes = json.loads((args.data / "classes.json").read_text())
    x, y = load(args.data / "train.parquet")
    xt, yt = load(args.data / "test.parquet")
    model = ByteCnn(len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.epochs * ((len(x) + 127) // 128))
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x))
        start = time.time()
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {acc:.4f} ({time.time() - start:.0f} s)")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters")
    model.eval()
    torch.onnx.export(
        model, (x[:2],), str(args.out), input_names=["bytes"], output_names=["logits"],
        dynamic_axes={"bytes": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )


if __name__ == "__main__":
    main()
