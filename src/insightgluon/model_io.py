"""Load MXNet checkpoints (``prefix-symbol.json`` + ``prefix-NNNN.params``) as Gluon blocks.

Works for checkpoints written by this toolkit, by the 2018 InsightFace code and
by any third-party MXNet face model: the graph is cut at a chosen output layer
(``fc1`` by default, the embedding) and wrapped in a ``SymbolBlock``.
:func:`load_embedding_model` goes further: a checkpoint whose arrays are exactly
those of a zoo network runs through that network (fast PReLU, one depthwise
convolution where the 2018 Xception sliced channels), once a probe batch has
shown that it computes what the checkpoint's own graph computes.
"""
import logging
import os
from typing import List, NamedTuple, Optional, Tuple

from insightgluon.errors import CheckpointError


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
        raise CheckpointError(f"{sym_file}: not a readable MXNet symbol file ({_first_line(err)})")
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
        raise CheckpointError(f"{params_file}: not a readable MXNet params file ({_first_line(err)})")
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


class EmbeddingModel(NamedTuple):
    """A loaded embedding network and how it runs.

    ``engine`` is ``"zoo"`` (``network``/``options`` say which) or ``"graph"`` (the
    checkpoint's own symbol); ``image_hw`` is the input size it was checked at.
    """

    block: object
    engine: str
    network: str = ""
    options: Optional[dict] = None
    image_hw: Tuple[int, int] = (112, 112)

    def describe(self) -> str:
        if self.engine != "zoo":
            return "the checkpoint's own graph"
        opts = ", ".join(f"{k}={v}" for k, v in sorted((self.options or {}).items()))
        return f"zoo network {self.network}" + (f" ({opts})" if opts else "")


# A zoo network replaces a checkpoint's graph only if their outputs agree this closely.
ZOO_TOLERANCE = 1e-4


def load_embedding_model(prefix: str, epoch: int, layer: str = "fc1", ctx=None,
                         engine: str = "auto") -> EmbeddingModel:
    """Load a checkpoint's embedding, through its zoo network when it provably is one.

    Parameters
    ----------
    prefix, epoch, layer, ctx
        As :func:`load_symbol_block`.
    engine : {"auto", "zoo", "graph"}
        ``auto``: the zoo network if the checkpoint's arrays are exactly one's (after the
        model-zoo naming variants) and its output on a probe batch equals the graph's,
        else the graph. ``zoo``: the same, but failing instead of falling back.
        ``graph``: always the checkpoint's own graph (the black box).
    """
    import mxnet as mx
    import numpy as np

    graph = load_symbol_block(prefix, epoch, layer=layer, ctx=ctx)
    if engine == "graph":
        return EmbeddingModel(graph, "graph")
    if engine not in ("auto", "zoo"):
        raise ValueError(f"engine={engine!r}: expected auto, zoo or graph")
    from insightgluon.networks import get_network, load_legacy_params
    from insightgluon.networks.identify import identify_network
    from insightgluon.networks.legacy import read_legacy_params

    params_file = checkpoint_paths(prefix, epoch)[1]
    found = None
    if layer in ("fc1", "fc1_output"):
        found = identify_network(read_legacy_params(params_file))
    if found is None:
        return _no_zoo(engine, params_file, "its arrays are not those of any zoo network", graph)
    name, options, image_hw = found
    net = get_network(name, **options)
    load_legacy_params(net, params_file, ctx=ctx or mx.cpu())
    first = (ctx or [mx.cpu()])[0] if isinstance(ctx, (list, tuple)) else (ctx or mx.cpu())
    probe = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3) + tuple(image_hw)), ctx=first)
    want, got = graph(probe).asnumpy(), net(probe).asnumpy()
    rel = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    if not rel < ZOO_TOLERANCE:
        return _no_zoo(engine, params_file, f"zoo network {name} has its arrays but differs from its "
                                            f"graph (max rel diff {rel:.2g})", graph)
    model = EmbeddingModel(net, "zoo", name, options, tuple(image_hw))
    logging.getLogger(__name__).info("%s: runs as %s (max rel diff to its graph %.1g)", params_file,
                                     model.describe(), rel)
    return model


def _no_zoo(engine: str, params_file: str, why: str, graph) -> EmbeddingModel:
    if engine == "zoo":
        raise CheckpointError(f"{params_file}: cannot run through a zoo network: {why}")
    logging.getLogger(__name__).info("%s: runs as its own graph (%s)", params_file, why)
    return EmbeddingModel(graph, "graph")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
