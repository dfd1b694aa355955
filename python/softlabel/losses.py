"""softlabel's distillation losses in numpy, row by row, as its Rust training computes them (Hinton,
Vinyals and Dean 2015):

    alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(label, p_1(student))

for dense labels; top-k labels replace the KL by the KL over the k stored classes plus one residual
bucket (the teacher's remaining mass against the student's, from its softmax over all classes); sampled
labels replace it by the mean of -log q_T over the k draws (an unbiased estimate of the cross-entropy,
Anshumann et al. 2025). Rows labeled -1 contribute only the distillation term. Every function returns
the per-row losses (float64) and, with `grad=True`, d loss / d student logits too. T and alpha are taken
as float32, as softlabel's settings hold them, so the losses equal its own to float64 rounding.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from .dataset import logsumexp_t, softmax_t

Result = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _f32(v: float) -> float:
    """A setting as softlabel holds it: float32 (alpha = 0.7 is 0.699999988...)."""
    return float(np.float32(v))


def _log_q(z: np.ndarray, t: float) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    return z.astype(np.float64) / float(t) - logsumexp_t(z, t)[:, None]


def _hard(z: np.ndarray, labels: Optional[np.ndarray], alpha: float, loss: np.ndarray, g: Optional[np.ndarray]):
    """Adds the hard-label term (1 - alpha) * CE to `loss` (and its gradient to `g`)."""
    if labels is None or alpha >= 1.0:
        return
    labels = np.asarray(labels)
    rows = np.nonzero(labels >= 0)[0]
    if len(rows) == 0:
        return
    lq = _log_q(z[rows], 1.0)
    b = 1.0 - alpha
    loss[rows] += -b * lq[np.arange(len(rows)), labels[rows]]
    if g is not None:
        q = np.exp(lq)
        q[np.arange(len(rows)), labels[rows]] -= 1.0
        g[rows] += b * q


def kd_dense(student_logits, teacher_logits, labels=None, temperature: float = 4.0, alpha: float = 0.9,
             grad: bool = False) -> Result:
    """KD against dense teacher logits `[rows, K]`. The teacher's softmax and log-softmax at T are taken in
    float64 and rounded to float32, as softlabel stores them and trains on them."""
    z = np.asarray(student_logits, dtype=np.float32)
    t, a = _f32(temperature), _f32(alpha)
    loss = np.zeros(len(z))
    g = np.zeros(z.shape) if grad else None
    if a > 0:
        zt = np.asarray(teacher_logits, dtype=np.float32)
        p = softmax_t(zt, t).astype(np.float32).astype(np.float64)
        lp = (zt.astype(np.float64) / t - logsumexp_t(zt, t)[:, None]).astype(np.float32).astype(np.float64)
        lq = _log_q(z, t)
        with np.errstate(invalid="ignore"):
            terms = np.where(p > 0, p * (lp - lq), 0.0)
        loss += a * t * t * terms.sum(axis=1)
        if g is not None:
            g += a * t * (np.exp(lq) - p)
    _hard(z, labels, a, loss, g)
    return (loss, g) if grad else loss


def kd_topk(student_logits, index, p, residual, labels=None, temperature: float = 4.0, alpha: float = 0.9,
            grad: bool = False) -> Result:
    """KD against top-k labels (`SoftLabels.topk()`: classes `[rows, k]`, the teacher's p_T of each and
    the residual mass): KL over the k classes plus the residual bucket, whose student side is the
    student's mass on every other class."""
    z = np.asarray(student_logits, dtype=np.float32)
    t, a = _f32(temperature), _f32(alpha)
    n, num_classes = z.shape
    loss = np.zeros(n)
    g = np.zeros(z.shape) if grad else None
    if a > 0:
        index = np.asarray(index, dtype=np.int64)
        p = np.asarray(p, dtype=np.float64)
        r = np.maximum(np.asarray(residual, dtype=np.float64), 0.0)
        lq = _log_q(z, t)
        rows = np.arange(n)[:, None]
        stored = np.zeros(z.shape, dtype=bool)
        stored[rows, index] = True
        lq_k = lq[rows, index]
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(p > 0, p * (np.log(p) - lq_k), 0.0).sum(axis=1)
            rest = np.where(stored, -np.inf, lq)
            m = rest.max(axis=1)
            lq_rest = np.where(np.isfinite(m), m + np.log(np.exp(rest - m[:, None]).sum(axis=1)), -np.inf)
            bucket = np.where((r > 0) & np.isfinite(lq_rest), r * (np.log(r) - lq_rest), 0.0)
        loss += a * t * t * (kl + bucket)
        if g is not None:
            q = np.exp(lq)
            gg = q.copy()
            np.subtract.at(gg, (np.repeat(np.arange(n), index.shape[1]), index.ravel()), p.ravel())
            spread = np.where(~stored & np.isfinite(lq_rest)[:, None], r[:, None] * np.exp(lq - lq_rest[:, None]), 0.0)
            g += a * t * (gg - spread)
    _hard(z, labels, a, loss, g)
    return (loss, g) if grad else loss


def kd_sampled(student_logits, draws, labels=None, temperature: float = 4.0, alpha: float = 0.9,
               grad: bool = False) -> Result:
    """KD against sampled labels (`SoftLabels.sampled()`: k classes drawn from p_T per row): the mean
    of -log q_T over the draws, an unbiased estimate of the cross-entropy to the teacher (it differs from
    the KL by the teacher's entropy, a constant)."""
    z = np.asarray(student_logits, dtype=np.float32)
    t, a = _f32(temperature), _f32(alpha)
    n = len(z)
    loss = np.zeros(n)
    g = np.zeros(z.shape) if grad else None
    draws = np.asarray(draws, dtype=np.int64)
    if a > 0 and draws.shape[1] > 0:
        lq = _log_q(z, t)
        w = 1.0 / draws.shape[1]
        loss += a * t * t * (-w * lq[np.arange(n)[:, None], draws].sum(axis=1))
        if g is not None:
            counts = np.zeros(z.shape)
            np.add.at(counts, (np.repeat(np.arange(n), draws.shape[1]), draws.ravel()), w)
            g += a * t * (np.exp(lq) - counts)
    _hard(z, labels, a, loss, g)
    return (loss, g) if grad else loss


def kd_loss(student_logits, labels_set, rows=None, temperature: Optional[float] = None, alpha: float = 0.9,
            grad: bool = False) -> Result:
    """The loss of `student_logits` against rows `rows` (all by default) of an opened dataset, in its
    form: dense, top-k or sampled. `temperature` defaults to the dataset's (sparse forms: only it)."""
    ds = labels_set
    t = temperature or ds.temperature
    sel = slice(None) if rows is None else rows
    hard = ds.labels()[sel]
    if ds.form == "dense":
        return kd_dense(student_logits, ds.logits()[sel], hard, t, alpha, grad)
    if t != ds.temperature:
        raise ValueError(f"{ds.form} labels hold the teacher at T = {ds.temperature} only, not {t}")
    if ds.form == "top-k":
        k = ds.topk()
        return kd_topk(student_logits, k.index[sel], k.p[sel], k.residual[sel], hard, t, alpha, grad)
    return kd_sampled(student_logits, ds.sampled()[sel], hard, t, alpha, grad)
