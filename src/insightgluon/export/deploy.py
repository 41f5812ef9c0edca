"""Deployment checkpoints: strip the classifier (the legacy ``model_slim``) and save atomically.

A training checkpoint holds the whole graph, including ``fc7_weight`` of shape
``(num_classes, emb_size)`` (174 MB for 85K identities); deployment needs only
the subgraph up to the embedding ``fc1``.
"""
import logging
import os
import tempfile
from typing import Dict, Tuple

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
