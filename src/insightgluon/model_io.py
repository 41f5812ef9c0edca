"""Load MXNet checkpoints (``prefix-symbol.json`` + ``prefix-NNNN.params``) as Gluon blocks.

Works for checkpoints written by this toolkit, by the 2018 InsightFace code and
by any third-party MXNet face model: the graph is cut at a chosen output layer
(``fc1`` by default, the embedding) and wrapped in a ``SymbolBlock``.
:func:`load_embedding_model` goes further: a checkpoint whose arrays are exactly
those of a zoo network runs through that network (fast PReLU, one depthwise
convolution where the 2018 Xception sliced channels), once a probe batch has
shown that it computes what the checkpoint's own graph computes; any other graph
runs with its native PReLU layers rewritten into the fast form (the same numbers);
and either can run in onnxruntime instead of MXNet.
"""
import logging
import os
from typing import List, NamedTuple, Optional, Tuple

from insightgluon.errors import CheckpointError, ConfigError


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

    ``engine`` is ``"zoo"`` (``network``/``options`` say which), ``"graph"`` (the
    checkpoint's own symbol) or ``"onnxruntime"`` (the ONNX export of the one of those
    two that ``auto`` picks; ``network`` is set when that was the zoo network);
    ``image_hw`` is the input size it was checked at.
    """

    block: object
    engine: str
    network: str = ""
    options: Optional[dict] = None
    image_hw: Tuple[int, int] = (112, 112)
    dtype: str = "float32"

    def describe(self) -> str:
        if self.dtype != "float32":
            return f"{self._replace(dtype='float32').describe()} in {self.dtype}"
        if self.engine == "onnxruntime":
            inner = EmbeddingModel(None, "zoo" if self.network else "graph", self.network, self.options)
            return f"onnxruntime on the ONNX export of {inner.describe()}"
        if self.engine != "zoo":
            return "the checkpoint's own graph"
        opts = ", ".join(f"{k}={v}" for k, v in sorted((self.options or {}).items()))
        return f"zoo network {self.network}" + (f" ({opts})" if opts else "")


# A zoo network replaces a checkpoint's graph only if their outputs agree this closely.
ZOO_TOLERANCE = 1e-4

#: What ``load_embedding_model(engine=...)`` accepts.
ENGINES = ("auto", "zoo", "graph", "onnxruntime")


def load_embedding_model(prefix: str, epoch: int, layer: str = "fc1", ctx=None,
                         engine: str = "auto", fast_prelu: bool = True,
                         image_hw: Optional[Tuple[int, int]] = None,
                         dtype: str = "float32") -> EmbeddingModel:
    """Load a checkpoint's embedding, through its zoo network when it provably is one.

    Parameters
    ----------
    prefix, epoch, layer, ctx
        As :func:`load_symbol_block`.
    engine : {"auto", "zoo", "graph", "onnxruntime"}
        ``auto``: the zoo network if the checkpoint's arrays are exactly one's (after the
        model-zoo naming variants) and its output on a probe batch equals the graph's,
        else the graph. ``zoo``: the same, but failing instead of falling back.
        ``graph``: always the checkpoint's own graph (the black box). ``onnxruntime``:
        what ``auto`` picks, exported to ONNX (parity-checked) and run by onnxruntime on
        the CPU (see :class:`insightgluon.export.engine.OnnxEmbedding`).
    fast_prelu : bool
        When the checkpoint's own graph runs, compute its ``LeakyReLU(act_type='prelu')``
        layers in the fast form (:func:`insightgluon.export.graph.fast_prelu_symbol`):
        the same numbers in float32, faster on a CPU (``bench/graph_prelu.py``).
    image_hw : (int, int), optional
        Input size of the images to embed: the shape the graph's PReLU channels are
        inferred at and the input of an ONNX export (default: the zoo network's face
        size, else 112x112).
    dtype : {"float32", "bfloat16", "float16"}
        Compute precision of the MXNet engines (the choice among them is made in float32):
        a zoo network casts per layer as in training (:func:`insightgluon.nn.set_compute_dtype`),
        a graph goes through MXNet's AMP conversion. The output is float32 either way.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "onnxruntime":
        from insightgluon.export.engine import load_onnxruntime_model

        if dtype != "float32":
            raise ConfigError("--engine onnxruntime runs the float32 ONNX export; drop --dtype or use an "
                              "MXNet engine (auto, zoo, graph)")
        return load_onnxruntime_model(prefix, epoch, layer, ctx=ctx, image_hw=image_hw)
    model = _load_mxnet(prefix, epoch, layer, ctx, engine, fast_prelu, image_hw)
    return model if dtype == "float32" else _in_precision(model, prefix, epoch, ctx, dtype)


def _load_mxnet(prefix, epoch, layer, ctx, engine, fast_prelu, image_hw) -> EmbeddingModel:
    """The float32 zoo network or graph of ``load_embedding_model``."""
    import mxnet as mx
    import numpy as np

    graph = load_symbol_block(prefix, epoch, layer=layer, ctx=ctx)
    params_file = checkpoint_paths(prefix, epoch)[1]
    if engine == "graph":
        return _graph_model(graph, params_file, fast_prelu, image_hw)
    from insightgluon.networks import get_network, load_legacy_params
    from insightgluon.networks.identify import identify_network
    from insightgluon.networks.legacy import read_legacy_params

    found = None
    if layer in ("fc1", "fc1_output"):
        found = identify_network(read_legacy_params(params_file), image_hw)
    if found is None:
        return _no_zoo(engine, params_file, "its arrays are not those of any zoo network", graph,
                       fast_prelu, image_hw)
    name, options, zoo_hw = found
    net = get_network(name, **options)
    load_legacy_params(net, params_file, ctx=ctx or mx.cpu())
    first = (ctx or [mx.cpu()])[0] if isinstance(ctx, (list, tuple)) else (ctx or mx.cpu())
    probe = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3) + tuple(zoo_hw)), ctx=first)
    want, got = graph(probe).asnumpy(), net(probe).asnumpy()
    rel = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    if not rel < ZOO_TOLERANCE:
        return _no_zoo(engine, params_file, f"zoo network {name} has its arrays but differs from its "
                                            f"graph (max rel diff {rel:.2g})", graph, fast_prelu, image_hw)
    model = EmbeddingModel(net, "zoo", name, options, tuple(zoo_hw))
    logging.getLogger(__name__).info("%s: runs as %s (max rel diff to its graph %.1g)", params_file,
                                     model.describe(), rel)
    return model


def _in_precision(model: EmbeddingModel, prefix: str, epoch: int, ctx, dtype: str) -> EmbeddingModel:
    """``model`` computing in ``dtype``, on arrays read afresh from the checkpoint.

    Fresh arrays, because a float32 inference pass (the zoo probe) lets oneDNN reorder
    depthwise weights in place into a layout it cannot cast to bfloat16.
    """
    import mxnet as mx

    from insightgluon.networks import get_network, load_legacy_params
    from insightgluon.networks.legacy import read_legacy_params
    from insightgluon.nn import Float32Output, set_compute_dtype

    params_file = checkpoint_paths(prefix, epoch)[1]
    first = (ctx or [mx.cpu()])[0] if isinstance(ctx, (list, tuple)) else (ctx or mx.cpu())
    if model.engine == "zoo":
        net = get_network(model.network, **(model.options or {}))
        set_compute_dtype(net, dtype)
        load_legacy_params(net, params_file, ctx=ctx or mx.cpu())
        return model._replace(block=Float32Output(net), dtype=dtype)
    from mxnet.contrib import amp

    block = mx.gluon.SymbolBlock(model.block(mx.sym.var("data")), mx.sym.var("data", dtype="float32"))
    saved = read_legacy_params(params_file)
    block.collect_params().load_dict({name: saved[name] for name in block.collect_params().keys()}, ctx=first)
    return model._replace(block=amp.convert_hybrid_block(block, target_dtype=dtype, ctx=first), dtype=dtype)


def _no_zoo(engine: str, params_file: str, why: str, graph, fast_prelu: bool,
            image_hw: Optional[Tuple[int, int]]) -> EmbeddingModel:
    if engine == "zoo":
        raise CheckpointError(f"{params_file}: cannot run through a zoo network: {why}")
    logging.getLogger(__name__).info("%s: runs as its own graph (%s)", params_file, why)
    return _graph_model(graph, params_file, fast_prelu, image_hw)


def _graph_model(graph, params_file: str, fast_prelu: bool,
                 image_hw: Optional[Tuple[int, int]]) -> EmbeddingModel:
    """The checkpoint's own graph, its native PReLU layers in the fast form if ``fast_prelu``."""
    image_hw = tuple(image_hw or (112, 112))
    if not fast_prelu:
        return EmbeddingModel(graph, "graph", image_hw=image_hw)
    import mxnet as mx

    from insightgluon.export.graph import count_prelu, fast_prelu_symbol

    log = logging.getLogger(__name__)
    symbol = graph(mx.sym.var("data"))
    native = count_prelu(symbol)
    if not native:
        return EmbeddingModel(graph, "graph", image_hw=image_hw)
    try:
        fast = fast_prelu_symbol(symbol, (1, 3) + image_hw)
    except ValueError as err:
        log.info("%s: its graph keeps its %d native PReLU layers (%s)", params_file, native, err)
        return EmbeddingModel(graph, "graph", image_hw=image_hw)
    # The same Parameter objects: nothing is copied and the arrays stay where they were loaded.
    block = mx.gluon.SymbolBlock(fast, mx.sym.var("data", dtype="float32"), params=graph.collect_params())
    log.info("%s: %d of %d PReLU layers of its graph run in the fast form", params_file,
             native - count_prelu(fast), native)
    return EmbeddingModel(block, "graph", image_hw=image_hw)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
