"""Pieces every loss head shares: the registry, the head interface, metrics and hyper-parameter checks."""
import math
from typing import Any, Dict, Mapping, Optional

import mxnet as mx
import numpy as np

from insightgluon.errors import ConfigError
from insightgluon.registry import Registry

#: Loss factories keyed by name; each is called as ``factory(num_classes, emb_size, hyper)``.
LOSSES = Registry("loss")


class LossHead:
    """Interface of a classification head or metric loss (mixed into a Gluon block).

    Calling the block as ``head(embedding, label)`` returns ``(loss, logits)``:
    ``loss`` is (N,) per sample and ``logits`` (N, K) are the margin-penalised
    scaled logits the legacy training accuracy is computed from (``None`` for
    metric losses such as triplet).
    """

    #: True when batches must hold several images per identity (triplet loss).
    needs_identity_batches = False

    def set_step(self, step: int) -> None:
        """Update schedules that depend on the global batch counter; the default has none."""

    def accuracy(self, logits, label) -> float:
        """Training accuracy of ``logits`` returned by this head for ``label``."""
        return accuracy(logits, label)

    def correct(self, logits, label):
        """Rows of ``logits`` (this head's last output) whose arg-max is the label.

        A one-element NDArray on the logits' device, so a multi-device step can
        count hits without waiting for each device; :meth:`accuracy` is the
        NumPy-side equivalent.
        """
        return (mx.nd.argmax(logits, axis=1) == label.astype(logits.dtype)).sum()


def _to_numpy(array) -> np.ndarray:
    return array.asnumpy() if isinstance(array, mx.nd.NDArray) else np.asarray(array)


def accuracy(logits, label) -> float:
    """Fraction of rows whose arg-max is the label.

    Applied to the margin-penalised logits a head returns, this is the legacy
    training ``acc`` (it stays near 0 for ArcFace early on, because the target
    logit carries the margin); applied to logits without margin
    (:meth:`MarginHead.plain_logits`) it is the plain accuracy.

    Parameters
    ----------
    logits : NDArray or ndarray, shape (N, C)
    label : NDArray or ndarray, shape (N,)

    Returns
    -------
    float
    """
    scores = _to_numpy(logits)
    target = _to_numpy(label).astype(np.int64).ravel()
    if scores.ndim != 2 or scores.shape[0] != target.shape[0]:
        raise ValueError(f"accuracy: logits {scores.shape} do not match labels {target.shape}")
    if target.size == 0:
        return 0.0
    return float(np.mean(np.argmax(scores, axis=1) == target))


def ce_loss(logits, label) -> float:
    """Mean softmax cross-entropy of ``logits`` (the legacy ``--ce-loss`` ``lossvalue``).

    Parameters
    ----------
    logits : NDArray or ndarray, shape (N, C)
    label : NDArray or ndarray, shape (N,)

    Returns
    -------
    float
    """
    scores = _to_numpy(logits).astype(np.float64)
    target = _to_numpy(label).astype(np.int64).ravel()
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_prob[np.arange(target.size), target].mean())


def softmax_cross_entropy(F, logits, label):
    """Per-sample ``-log softmax(logits)[label]``, shape (N,)."""
    return -F.pick(F.log_softmax(logits, axis=1), label, axis=1)


class Hyper:
    """Read and check a loss's hyper-parameters from the training-config mapping.

    Keys a loss does not read are ignored, so the trainer can pass the whole
    config. Every check failure is one ``ConfigError`` line naming the loss and
    the key.
    """

    def __init__(self, loss: str, values: Mapping[str, Any]):
        self.loss = loss
        self.values: Dict[str, Any] = dict(values)

    def get(self, key: str, default, kind=float, low: Optional[float] = None,
            high: Optional[float] = None, low_open: bool = False, high_open: bool = False):
        """Return ``values[key]`` (or ``default`` when absent or None) converted with ``kind``."""
        raw = self.values.get(key)
        raw = default if raw is None else raw
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"loss {self.loss}: {key}={raw!r} is not a {kind.__name__}") from None
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"loss {self.loss}: {key}={raw!r} must be finite")
        if low is not None and (value < low or (low_open and value == low)):
            bound = ">" if low_open else ">="
            raise ConfigError(f"loss {self.loss}: {key}={raw!r} must be {bound} {low}")
        if high is not None and (value > high or (high_open and value == high)):
            bound = "<" if high_open else "<="
            raise ConfigError(f"loss {self.loss}: {key}={raw!r} must be {bound} {high}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """Return a boolean hyper-parameter; accepts bools and 0/1."""
        raw = self.values.get(key)
        if raw is None:
            return default
        if isinstance(raw, str):
            if raw.strip().lower() in ("1", "true", "yes"):
                return True
            if raw.strip().lower() in ("0", "false", "no", ""):
                return False
            raise ConfigError(f"loss {self.loss}: {key}={raw!r} is not a boolean")
        return bool(raw)
