"""Deployment checkpoints: strip the classifier (the legacy ``model_slim``), calibrate a threshold.

A training checkpoint holds the whole graph, including ``fc7_weight`` of shape
``(num_classes, emb_size)`` (174 MB for 85K identities); deployment needs only
the subgraph up to the embedding ``fc1``.
"""
import json
import logging
import os
import tempfile
from typing import Dict, Tuple

import numpy as np

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.export.fixes import cut_symbol
from insightgluon.export.onnx import graph_input, load_checkpoint
from insightgluon.model_io import checkpoint_paths

logger = logging.getLogger(__name__)


def save_checkpoint(prefix: str, epoch: int, symbol, params: Dict) -> Tuple[str, str]:
    """Write ``prefix-symbol.json`` and ``prefix-%04d.params`` atomically.

    Parameters
    ----------
    symbol : mx.sym.Symbol
    params : dict of str to NDArray
        Unprefixed names; auxiliary states (BatchNorm moving statistics) are
        stored as ``aux:`` and everything else as ``arg:``, like
        ``mx.model.save_checkpoint``. Parameters the symbol does not use are
        dropped.

    Returns
    -------
    (str, str)
        The symbol and parameter file paths.
    """
    import mxnet as mx

    sym_file, params_file = checkpoint_paths(prefix, epoch)
    aux = set(symbol.list_auxiliary_states())
    args = set(symbol.list_arguments())
    saved = {("aux:" if name in aux else "arg:") + name: value
             for name, value in params.items() if name in aux or name in args}
    out_dir = os.path.dirname(os.path.abspath(sym_file))
    os.makedirs(out_dir, exist_ok=True)
    for path, write in ((params_file, lambda tmp: mx.nd.save(tmp, saved)),
                        (sym_file, symbol.save)):
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=out_dir)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return sym_file, params_file


def strip_fc7(prefix: str, epoch: int, out_prefix: str, layer: str = "fc1") -> Tuple[str, str]:
    """Keep the subgraph ending at ``layer`` and its weights; drop ``fc7*`` and the loss.

    Parameters
    ----------
    prefix, epoch : str, int
        A training checkpoint (``prefix-symbol.json``, ``prefix-%04d.params``).
    out_prefix : str
        Output checkpoint prefix; the epoch number is kept.
    layer : str
        The embedding node (default ``fc1``).

    Returns
    -------
    (str, str)
        The written symbol and parameter files. The new checkpoint loads with
        :func:`insightgluon.model_io.load_symbol_block` and exports to ONNX.
    """
    sym_file = checkpoint_paths(prefix, epoch)[0]
    symbol, params = load_checkpoint(prefix, epoch)
    internals = symbol.get_internals()
    wanted = layer if layer.endswith("_output") else f"{layer}_output"
    if wanted in internals.list_outputs():
        # Keep the exact layer asked for, even an L2Normalization, unlike ONNX export.
        cut = internals[wanted]
    else:
        cut = cut_symbol(symbol, layer, sym_file)[0]
    graph_input(cut, params, sym_file)
    needed = set(cut.list_arguments()) | set(cut.list_auxiliary_states())
    kept = {name: value for name, value in params.items() if name in needed}
    dropped = sorted(set(params) - set(kept))
    paths = save_checkpoint(out_prefix, epoch, cut, kept)
    size = sum(v.size for v in kept.values())
    logger.info("%s: kept %d parameters (%d values) up to '%s', dropped %d (%s)", paths[1],
                len(kept), size, layer, len(dropped), ", ".join(dropped[:4]) or "none")
    return paths


def threshold_at_far(embeddings: np.ndarray, issame: np.ndarray, far: float,
                     source: str = "") -> Dict[str, float]:
    """Cosine threshold whose false-accept rate on these pairs is at most ``far``.

    Uses the verification protocol's distances and TAR@FAR rule
    (:mod:`insightgluon.eval.verification`): at most ``floor(far * negatives)``
    different pairs are accepted. The threshold sits halfway between the last
    accepted and the first rejected different-pair distance ``d`` and is given
    as a cosine similarity, ``1 - d / 2`` for unit embeddings.

    Parameters
    ----------
    embeddings : np.ndarray
        ``(2P, D)`` L2-normalised embeddings in pair order.
    issame : np.ndarray
        ``(P,)`` genuine-pair flags.
    far : float
        Target false-accept rate, e.g. ``1e-3``.

    Returns
    -------
    dict
        ``threshold_cos``, ``far`` (requested), ``far_measured``, ``tar`` at
        that threshold, ``accuracy`` (10-fold) and ``tar_at_far_eval`` (the
        verification report's figure), for reference.
    """
    from insightgluon.eval.verification import evaluate

    issame = np.asarray(issame, dtype=bool)
    negatives = int((~issame).sum())
    if not 0.0 < far < 1.0:
        raise ConfigError(f"FAR must be in (0, 1), got {far}")
    allowed = int(np.floor(far * negatives + 1e-9))
    if allowed < 1 or not issame.any():
        raise ConfigError(f"{source}: {negatives} different pairs cannot measure FAR {far:g} "
                          f"(needs at least {int(np.ceil(1 / far))})")
    result = evaluate(embeddings, issame, nfolds=min(10, len(issame)), far_targets=(far,))
    dist = result.distances
    neg = np.sort(dist[~issame])
    # Accepting d < neg[allowed] lets exactly `allowed` different pairs through (the
    # TAR@FAR rule); the midpoint to the last accepted one keeps a margin for rounding.
    limit = (neg[allowed - 1] + neg[allowed]) / 2.0 if allowed < len(neg) else np.inf
    return {"threshold_cos": float(1.0 - limit / 2.0) if np.isfinite(limit) else -1.0,
            "far": float(far), "far_measured": float(np.mean(dist[~issame] < limit)),
            "tar": float(np.mean(dist[issame] < limit)), "accuracy": result.accuracy,
            "tar_at_far_eval": result.tar_at_far[float(far)]}


def calibrate_threshold(model, bin_path: str, far: float = 1e-3, image_size=(112, 112),
                        batch_size: int = 32) -> Dict[str, float]:
    """Embed a ``.bin`` verification set with ``model`` and pick the threshold at ``far``.

    ``model`` maps an NDArray ``(N, 3, H, W)`` of raw RGB to ``(N, D)`` (a Gluon
    block or :class:`insightgluon.face.search.FaceModel`); embeddings are
    flip-summed like every other use of the model in this toolkit.

    Returns the dict of :func:`threshold_at_far` plus ``calibration_bin``.
    """
    from insightgluon.eval.embed import embed_images
    from insightgluon.eval.verification import VerificationSet

    vset = VerificationSet.load(bin_path, image_size=tuple(image_size))
    emb, _ = embed_images(model, vset.images, batch_size=batch_size, flip=True,
                          progress=vset.name)
    values = threshold_at_far(emb, vset.issame, far, source=bin_path)
    values["calibration_bin"] = os.path.basename(bin_path)
    logger.info("%s: threshold_cos %.4f at FAR %g (measured %.4g), TAR %.4f, accuracy %.4f",
                bin_path, values["threshold_cos"], far, values["far_measured"], values["tar"],
                values["accuracy"])
    return values


def metadata_path(prefix: str, epoch: int) -> str:
    """Sidecar JSON holding a checkpoint's deployment metadata (threshold, ...)."""
    return f"{prefix}-{epoch:04d}.meta.json"


def write_checkpoint_metadata(prefix: str, epoch: int, values: Dict) -> str:
    """Write :func:`metadata_path` atomically; returns its path."""
    path = metadata_path(prefix, epoch)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump({k: values[k] for k in sorted(values)}, stream, indent=1)
    os.replace(tmp, path)
    return path


def read_checkpoint_metadata(prefix: str, epoch: int) -> Dict[str, str]:
    """The sidecar metadata of a checkpoint (empty when there is none)."""
    path = metadata_path(prefix, epoch)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as stream:
            values = json.load(stream)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable metadata file ({err})")
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return {str(k): str(v) for k, v in values.items()}
