"""PyTorch side of the reader (needs torch): the distillation losses as differentiable functions equal
to the numpy ones (and so to softlabel's Rust losses), and a `Dataset` of a soft-label dataset whose
inputs are the stored ones or the user's own joined by id (label-only datasets)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from .dataset import SchemaError, SoftLabels


def _f32(v: float) -> float:
    """A setting as softlabel holds it: float32."""
    return float(np.float32(v))


def _log_q(z: torch.Tensor, t: float) -> torch.Tensor:
    return torch.log_softmax(z.double() / t, dim=1)


def _hard(z: torch.Tensor, labels: Optional[torch.Tensor], alpha: float) -> torch.Tensor:
    if labels is None or alpha >= 1.0:
        return torch.zeros(len(z), dtype=torch.float64, device=z.device)
    lq = _log_q(z, 1.0)
    y = labels.long()
    picked = lq.gather(1, y.clamp(min=0)[:, None])[:, 0]
    return torch.where(y >= 0, -(1.0 - alpha) * picked, torch.zeros_like(picked))


def kd_dense(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: Optional[torch.Tensor] = None,
             temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Per-row KD against dense teacher logits (float64 rows; `.mean()` for a batch loss)."""
    t, alpha = _f32(temperature), _f32(alpha)
    loss = _hard(student_logits, labels, alpha)
    if alpha > 0:
        zt = teacher_logits.float().double() / t
        # The teacher's softmax and log-softmax at T rounded to float32, as softlabel stores them.
        p = torch.softmax(zt, dim=1).float().double()
        lp = torch.log_softmax(zt, dim=1).float().double()
        terms = torch.where(p > 0, p * (lp - _log_q(student_logits, t)), torch.zeros_like(p))
        loss = loss + alpha * t * t * terms.sum(dim=1)
    return loss


def kd_topk(student_logits: torch.Tensor, index: torch.Tensor, p: torch.Tensor, residual: torch.Tensor,
            labels: Optional[torch.Tensor] = None, temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Per-row KD against top-k labels: KL over the k stored classes plus the residual bucket."""
    t, alpha = _f32(temperature), _f32(alpha)
    loss = _hard(student_logits, labels, alpha)
    if alpha > 0:
        lq = _log_q(student_logits, t)
        index = index.long()
        p = p.double()
        r = residual.double().clamp(min=0.0)
        stored = torch.zeros_like(lq, dtype=torch.bool).scatter(1, index, True)
        kl = torch.where(p > 0, p * (torch.log(p) - lq.gather(1, index)), torch.zeros_like(p)).sum(dim=1)
        lq_rest = torch.logsumexp(lq.masked_fill(stored, float("-inf")), dim=1)
        ok = (r > 0) & torch.isfinite(lq_rest)
        bucket = torch.where(ok, r * (torch.log(r.clamp(min=1e-300)) - lq_rest.clamp(min=-1e300)), torch.zeros_like(r))
        loss = loss + alpha * t * t * (kl + bucket)
    return loss


def kd_sampled(student_logits: torch.Tensor, draws: torch.Tensor, labels: Optional[torch.Tensor] = None,
               temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Per-row KD against sampled labels: the mean of -log q_T over the draws."""
    t, alpha = _f32(temperature), _f32(alpha)
    loss = _hard(student_logits, labels, alpha)
    if alpha > 0 and draws.shape[1] > 0:
        lq = _log_q(student_logits, t)
        loss = loss + alpha * t * t * (-lq.gather(1, draws.long()).mean(dim=1))
    return loss


class SoftLabelDataset(torch.utils.data.Dataset):
    """Rows of a soft-label dataset for a `DataLoader`: each item is `(input, target)` where target is
    a dict of tensors: `label` (-1: unlabeled) and, by form, `logits` (dense), `index`/`p`/`residual`
    (top-k) or `draws` (sampled). Inputs are the stored ones, or for a label-only dataset (`--no-inputs`)
    yours: `inputs` indexed by `input_ids` (each row's id), joined by id; an id the labels have and your
    inputs lack is an error naming it."""

    def __init__(self, labels: SoftLabels, inputs: Optional[np.ndarray] = None,
                 input_ids: Optional[np.ndarray] = None, dtype: torch.dtype = torch.float32):
        self.labels = labels
        ids = labels.ids()
        if inputs is None:
            x = labels.inputs()
        else:
            if input_ids is None or len(input_ids) != len(inputs):
                raise ValueError("inputs joined by id need input_ids, one id per input row")
            where = {int(i): r for r, i in enumerate(input_ids)}
            missing = [int(i) for i in ids if int(i) not in where]
            if missing:
                raise SchemaError(f"{labels.path}: no input for id {missing[0]} ({len(missing)} ids missing)")
            x = np.asarray(inputs)[[where[int(i)] for i in ids]]
        self.x = torch.as_tensor(np.array(x), dtype=dtype)
        self.target: Dict[str, torch.Tensor] = {"label": torch.as_tensor(labels.labels())}
        if labels.form == "dense":
            self.target["logits"] = torch.as_tensor(labels.logits())
        elif labels.form == "top-k":
            k = labels.topk()
            self.target.update(index=torch.as_tensor(k.index), p=torch.as_tensor(k.p),
                               residual=torch.as_tensor(k.residual))
        else:
            self.target["draws"] = torch.as_tensor(labels.sampled())

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], {k: v[i] for k, v in self.target.items()}

    def loss(self, student_logits: torch.Tensor, target: Dict[str, torch.Tensor],
             temperature: Optional[float] = None, alpha: float = 0.9) -> torch.Tensor:
        """The mean KD loss of a batch, in the dataset's form (sparse forms at the stored T only)."""
        t = temperature or self.labels.temperature
        y = target["label"]
        if "logits" in target:
            return kd_dense(student_logits, target["logits"], y, t, alpha).mean()
        if t != self.labels.temperature:
            raise ValueError(f"{self.labels.form} labels hold the teacher at T = {self.labels.temperature} only")
        if "index" in target:
            return kd_topk(student_logits, target["index"], target["p"], target["residual"], y, t, alpha).mean()
        return kd_sampled(student_logits, target["draws"], y, t, alpha).mean()
