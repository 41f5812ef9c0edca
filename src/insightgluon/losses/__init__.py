"""Classification heads and metric losses selected by ``--loss-type``.

``create_loss(name, num_classes, emb_size, **hyper)`` builds a head from the
:data:`LOSSES` registry; ``LEGACY_LOSS_TYPES`` maps the 2018 integer loss types
to those names. See ``docs/LOSSES.md`` for the formulas.
"""
from typing import Union

from insightgluon.errors import ConfigError
from insightgluon.losses.base import LOSSES, Hyper, LossHead, accuracy, ce_loss
from insightgluon.losses import angular, focal, margin, partial_fc, sphereface, triplet  # noqa: F401 (registering)
from insightgluon.losses.margin import MarginHead
from insightgluon.losses.partial_fc import PartialFCHead

#: The one table from the legacy integer ``--loss-type`` to a loss name.
LEGACY_LOSS_TYPES = {0: "softmax", 1: "sphereface", 2: "cosface", 4: "arcface", 5: "combined", 12: "triplet"}

__all__ = ["LEGACY_LOSS_TYPES", "LOSSES", "LossHead", "MarginHead", "PartialFCHead", "accuracy", "ce_loss",
           "create_loss", "loss_name"]


def loss_name(value: Union[str, int]) -> str:
    """Resolve a legacy loss-type number (int or digit string) or a loss name to the name.

    Raises
    ------
    ConfigError
        For an unknown number or name; the message lists the valid choices.
    """
    text = str(value).strip()
    if isinstance(value, bool):
        text = ""
    if text.lstrip("-").isdigit():
        number = int(text)
        if number not in LEGACY_LOSS_TYPES:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(LEGACY_LOSS_TYPES.items()))
            raise ConfigError(f"unknown loss-type {number}; legacy loss types are: {known}")
        return LEGACY_LOSS_TYPES[number]
    LOSSES.get(text)
    return text


def create_loss(name: Union[str, int], num_classes: int, emb_size: int, **hyper) -> LossHead:
    """Build the loss head ``name`` (a name or legacy number).

    Parameters
    ----------
    name : str or int
    num_classes : int
        Identities C; the head owns ``fc7_weight`` of shape (C, emb_size).
    emb_size : int
    **hyper
        Training-config fields (``margin_s``, ``margin_m``, ``margin_a``, ``margin_b``,
        ``easy_margin``, ``beta`` …); keys a loss does not use are ignored.
        ``sample_rate`` < 1 wraps a margin head in :class:`PartialFCHead`.

    Returns
    -------
    LossHead
        A Gluon block: ``head(embedding (N, emb), label (N,)) -> (loss (N,), logits)``.
    """
    key = loss_name(name)
    if int(num_classes) < 1 or int(emb_size) < 1:
        raise ConfigError(f"loss {key}: num_classes={num_classes} and emb_size={emb_size} must be >= 1")
    hyper = Hyper(key, hyper)
    head = LOSSES.get(key)(int(num_classes), int(emb_size), hyper)
    rate = hyper.get("sample_rate", 1.0, low=0.0, high=1.0, low_open=True)
    if rate < 1.0 and isinstance(head, MarginHead):
        head = PartialFCHead(head, rate, seed=hyper.get("seed", 0, kind=int))
    return head

