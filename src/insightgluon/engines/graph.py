"""Engine ``graph``: a checkpoint's own MXNet graph, cut at its embedding layer.

The black box: whatever the checkpoint's ``-symbol.json`` computes, in MXNet, on any device.
Its native ``LeakyReLU(act_type='prelu')`` layers run in the fast form
(:func:`insightgluon.export.graph.fast_prelu_symbol`, the same numbers in float32, faster on
a CPU: ``bench/graph_prelu.py``); bfloat16 and float16 go through MXNet's AMP conversion.
"""
import logging

from insightgluon.engines.base import CHECKPOINT, ENGINES, EmbeddingModel, EngineUnavailable, first_context
from insightgluon.model_io import checkpoint_paths, load_symbol_block

logger = logging.getLogger(__name__)


@ENGINES.register("graph")
def load_graph(source, settings) -> EmbeddingModel:
    """The checkpoint's graph (its PReLU layers in the fast form if ``settings.fast_prelu``)."""
    if source.kind != CHECKPOINT:
        raise EngineUnavailable(f"{source.label}: engine graph runs MXNet checkpoints (prefix,epoch)")
    block = load_symbol_block(source.path, source.epoch, layer=source.layer, ctx=settings.ctx)
    model = graph_model(block, checkpoint_paths(source.path, source.epoch)[1], settings.fast_prelu,
                        settings.image_hw)
    return in_precision(model, source, settings) if settings.dtype != "float32" else model


def graph_model(block, params_file: str, fast_prelu: bool, image_hw) -> EmbeddingModel:
    """``block`` (a loaded graph) as an :class:`EmbeddingModel`, its PReLU layers in the fast form."""
    image_hw = tuple(image_hw or (112, 112))
    if not fast_prelu:
        return EmbeddingModel(block, "graph", image_hw=image_hw)
    import mxnet as mx

    from insightgluon.export.graph import count_prelu, fast_prelu_symbol

    symbol = block(mx.sym.var("data"))
    native = count_prelu(symbol)
    if not native:
        return EmbeddingModel(block, "graph", image_hw=image_hw)
    try:
        fast = fast_prelu_symbol(symbol, (1, 3) + image_hw)
    except ValueError as err:
        logger.info("%s: its graph keeps its %d native PReLU layers (%s)", params_file, native, err)
        return EmbeddingModel(block, "graph", image_hw=image_hw)
    # The same Parameter objects: nothing is copied and the arrays stay where they were loaded.
    fast_block = mx.gluon.SymbolBlock(fast, mx.sym.var("data", dtype="float32"), params=block.collect_params())
    logger.info("%s: %d of %d PReLU layers of its graph run in the fast form", params_file,
                native - count_prelu(fast), native)
    return EmbeddingModel(fast_block, "graph", image_hw=image_hw)


def in_precision(model: EmbeddingModel, source, settings) -> EmbeddingModel:
    """``model`` (the graph) converted by MXNet's AMP to compute in ``settings.dtype``.

    Arrays are read afresh from the checkpoint: a float32 inference pass lets oneDNN reorder
    depthwise weights in place into a layout it cannot cast to bfloat16.
    """
    import mxnet as mx
    from mxnet.contrib import amp

    from insightgluon.networks.legacy import read_legacy_params

    first = first_context(settings.ctx)
    block = mx.gluon.SymbolBlock(model.block(mx.sym.var("data")), mx.sym.var("data", dtype="float32"))
    saved = read_legacy_params(checkpoint_paths(source.path, source.epoch)[1])
    block.collect_params().load_dict({name: saved[name] for name in block.collect_params().keys()}, ctx=first)
    converted = amp.convert_hybrid_block(block, target_dtype=settings.dtype, ctx=first)
    return model._replace(block=converted, dtype=settings.dtype)
