"""Read MXNet checkpoints (``prefix-symbol.json`` + ``prefix-NNNN.params``) as Gluon blocks.

Works for checkpoints written by this toolkit, by the 2018 InsightFace code and
by any third-party MXNet face model: the graph is cut at a chosen output layer
(``fc1`` by default, the embedding) and wrapped in a ``SymbolBlock``. What runs a
checkpoint for evaluation (its zoo network, its graph, onnxruntime, OpenVINO) is
chosen in :mod:`insightgluon.engines`, which builds on this module.
"""
import os
from typing import List, Tuple

from insightgluon.errors import CheckpointError, first_line


def parse_model_spec(spec: str) -> List[Tuple[str, int]]:
    """Parse the legacy ``prefix,epoch[|prefix2,epoch2]`` model notation.

    Returns a list of ``(prefix, epoch)``; raises :class:`CheckpointError` on a
    malformed entry.
    """
    models = []
    for item in filter(None, spec.split("|")):
        prefix, sep, epoch = item.rpartition(",")
        if not sep or not prefix or not epoch.strip().lstrip("-").isdigit():
            raise CheckpointError(f"model '{item}': expected 'prefix,epoch' (e.g. model/r100,1)")
        models.append((prefix, int(epoch)))
    if not models:
        raise CheckpointError(f"model '{spec}': expected 'prefix,epoch' (e.g. model/r100,1)")
    return models


def checkpoint_paths(prefix: str, epoch: int) -> Tuple[str, str]:
    """The symbol and parameter file names of a checkpoint."""
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def output_names(symbol) -> List[str]:
    """Names of every internal output of ``symbol`` (``fc1_output``, ...)."""
    return list(symbol.get_internals().list_outputs())


def load_symbol_block(prefix: str, epoch: int, layer: str = "fc1", ctx=None,
                      input_name: str = "data"):
    """Load a checkpoint and return a ``SymbolBlock`` ending at ``layer``.

    Parameters
    ----------
    prefix, epoch : str, int
        Checkpoint ``prefix-symbol.json`` and ``prefix-%04d.params``.
    layer : str
        Output node; ``fc1`` and ``fc1_output`` are both accepted.
    ctx : mx.Context or list, optional
        Where to load the parameters (default CPU).

    Returns
    -------
    mxnet.gluon.SymbolBlock
        Input ``(N, 3, H, W)`` raw RGB 0-255 as the checkpoint expects,
        output ``(N, D)``.
    """
    import mxnet as mx

    sym_file, params_file = checkpoint_paths(prefix, epoch)
    for path in (sym_file, params_file):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        symbol = mx.sym.load(sym_file)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"{sym_file}: not a readable MXNet symbol file ({first_line(err)})")
    names = output_names(symbol)
    wanted = layer if layer.endswith("_output") else f"{layer}_output"
    if wanted not in names:
        near = [n for n in names if layer in n][:8]
        raise CheckpointError(f"{sym_file}: no layer '{layer}' in the graph"
                              + (f"; similar: {', '.join(near)}" if near else ""))
    out = symbol.get_internals()[wanted]
    try:
        saved = mx.nd.load(params_file)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"{params_file}: not a readable MXNet params file ({first_line(err)})")
    params = {k.split(":", 1)[-1]: v for k, v in saved.items()}
    block = mx.gluon.SymbolBlock(out, mx.sym.var(input_name, dtype="float32"))
    needed = set(block.collect_params().keys())
    missing = sorted(needed - set(params))
    if missing:
        raise CheckpointError(f"{params_file}: missing parameters for layer '{layer}': "
                              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    block.collect_params().load_dict({k: params[k] for k in needed}, ctx=ctx or mx.cpu(),
                                     filename=params_file)
    return block
