"""Engines ``zoo`` and ``mxnet``: a checkpoint run through the zoo network whose arrays it holds.

A checkpoint whose arrays are exactly those of a zoo network (after the model-zoo naming
variants; :func:`insightgluon.networks.identify.identify_network`) runs through that network -
fast PReLU, one depthwise convolution where the 2018 Xception sliced channels, per-layer
bfloat16 - once a probe batch has shown that it computes what the checkpoint's own graph
computes. ``zoo`` requires that; ``mxnet`` falls back to the graph (:mod:`.graph`) and is what
the ONNX engines export.
"""
import logging

import numpy as np

from insightgluon.engines.base import CHECKPOINT, ENGINES, EmbeddingModel, EngineUnavailable, first_context
from insightgluon.engines.graph import graph_model, in_precision
from insightgluon.errors import CheckpointError
from insightgluon.model_io import checkpoint_paths, load_symbol_block
from insightgluon.parity import max_relative

logger = logging.getLogger(__name__)

# A zoo network replaces a checkpoint's graph only if their outputs agree this closely.
ZOO_TOLERANCE = 1e-4


@ENGINES.register("zoo")
def load_zoo(source, settings) -> EmbeddingModel:
    """The zoo network the checkpoint provably is; :class:`CheckpointError` when it is none."""
    return _load(source, settings, strict=True)


@ENGINES.register("mxnet")
def load_mxnet(source, settings) -> EmbeddingModel:
    """The zoo network when the checkpoint provably is one, else its own graph."""
    return _load(source, settings, strict=False)


def _load(source, settings, strict: bool) -> EmbeddingModel:
    if source.kind != CHECKPOINT:
        raise EngineUnavailable(f"{source.label}: the MXNet engines run checkpoints (prefix,epoch)")
    model = _float32(source, settings, strict)
    if settings.dtype == "float32":
        return model
    if model.engine == "graph":
        return in_precision(model, source, settings)
    return _zoo_in_precision(model, source, settings)


def _float32(source, settings, strict: bool) -> EmbeddingModel:
    import mxnet as mx

    from insightgluon.networks import get_network, load_legacy_params
    from insightgluon.networks.identify import identify_network
    from insightgluon.networks.legacy import read_legacy_params

    graph = load_symbol_block(source.path, source.epoch, layer=source.layer, ctx=settings.ctx)
    params_file = checkpoint_paths(source.path, source.epoch)[1]
    found = None
    if source.layer in ("fc1", "fc1_output"):
        found = identify_network(read_legacy_params(params_file), settings.image_hw)
    if found is None:
        return _no_zoo(strict, params_file, "its arrays are not those of any zoo network", graph, settings)
    name, options, zoo_hw = found
    net = get_network(name, **options)
    load_legacy_params(net, params_file, ctx=settings.ctx or mx.cpu())
    probe = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3) + tuple(zoo_hw)),
                        ctx=first_context(settings.ctx))
    want, got = graph(probe).asnumpy(), net(probe).asnumpy()
    rel = max_relative(got, want)
    if not rel < ZOO_TOLERANCE:
        return _no_zoo(strict, params_file, f"zoo network {name} has its arrays but differs from its graph "
                                            f"(max rel diff {rel:.2g})", graph, settings)
    model = EmbeddingModel(net, "zoo", name, options, tuple(zoo_hw))
    logger.info("%s: runs as %s (max rel diff to its graph %.1g)", params_file, model.describe(), rel)
    return model


def _no_zoo(strict: bool, params_file: str, why: str, graph, settings) -> EmbeddingModel:
    if strict:
        raise CheckpointError(f"{params_file}: cannot run through a zoo network: {why}")
    logger.info("%s: runs as its own graph (%s)", params_file, why)
    return graph_model(graph, params_file, settings.fast_prelu, settings.image_hw)


def _zoo_in_precision(model: EmbeddingModel, source, settings) -> EmbeddingModel:
    """The zoo network computing in ``settings.dtype`` per layer, as in training.

    Arrays are read afresh: the float32 probe let oneDNN reorder depthwise weights in place
    into a layout it cannot cast to bfloat16.
    """
    import mxnet as mx

    from insightgluon.networks import get_network, load_legacy_params
    from insightgluon.nn import Float32Output, set_compute_dtype

    net = get_network(model.network, **(model.options or {}))
    set_compute_dtype(net, settings.dtype)
    load_legacy_params(net, checkpoint_paths(source.path, source.epoch)[1], ctx=settings.ctx or mx.cpu())
    return model._replace(block=Float32Output(net), dtype=settings.dtype)
