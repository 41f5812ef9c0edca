"""Engines: what runs an embedding model, looked up by ``--engine`` name.

=============== ==================================================== =========================
name            runs                                                  takes
=============== ==================================================== =========================
``zoo``         the zoo network a checkpoint provably is (MXNet)      checkpoints
``graph``       the checkpoint's own graph (MXNet)                    checkpoints
``mxnet``       ``zoo`` when it can, else ``graph``                   checkpoints
``onnxruntime`` onnxruntime on the CPU, float32                       checkpoints (exported), ONNX
``openvino``    OpenVINO on the CPU, float32 or bfloat16              checkpoints (exported), ONNX, IR
``auto``        the fastest of these that can run the model here and passes its parity probe
=============== ==================================================== =========================

:func:`load_embedding_model` is the one way from a model argument to a running engine:
``source -> engine loader -> EmbeddingModel``. Modules: :mod:`.base` (interface, registry,
probe), :mod:`.graph`, :mod:`.zoo`, :mod:`.onnxruntime`, :mod:`.openvino`.
"""
import logging
import os
from typing import Optional, Tuple

from insightgluon.engines import graph, onnxruntime, openvino, zoo  # noqa: F401  (register engines)
from insightgluon.engines.base import (CHECKPOINT, ENGINES, IR, ONNX, TORCH, EmbeddingModel, EngineUnavailable,
                                       ModelSource, Settings, model_source)
from insightgluon.errors import CheckpointError

__all__ = ["AUTO_ORDER", "CHECKPOINT", "ENGINES", "EmbeddingModel", "EngineUnavailable", "IR", "ModelSource", "ONNX",
           "Settings", "TORCH", "engine_choices", "load_embedding_model", "model_source"]

logger = logging.getLogger(__name__)

#: What ``auto`` tries, fastest first (docs/BENCHMARKS.md, "Engines"), by kind of model file.
AUTO_ORDER = {
    CHECKPOINT: ("openvino", "onnxruntime", "mxnet"),
    ONNX: ("openvino", "onnxruntime"),
    IR: ("openvino",),
}


def engine_choices() -> Tuple[str, ...]:
    """``--engine`` values: ``auto`` and every registered engine."""
    return ("auto",) + tuple(ENGINES.names())


def load_embedding_model(model, epoch: Optional[int] = None, layer: str = "fc1", ctx=None,
                         engine: str = "auto", fast_prelu: bool = True,
                         image_hw: Optional[Tuple[int, int]] = None,
                         dtype: str = "float32") -> EmbeddingModel:
    """Load an embedding model and the engine that runs it.

    Parameters
    ----------
    model, epoch
        A checkpoint prefix and its epoch; or ``model`` alone as ``"prefix,epoch"``, an
        ``.onnx`` file, an OpenVINO ``.xml`` (its ``.bin`` beside it) or an arcface_torch
        ``.pth`` (converted to a checkpoint of its zoo network first, then run as one).
    layer : str
        Embedding layer of a checkpoint's graph (default ``fc1``).
    ctx : mx.Context or list, optional
        Devices of the MXNet engines (default CPU); the ONNX engines run on the CPU only.
    engine : str
        A name of :func:`engine_choices`; ``auto`` tries :data:`AUTO_ORDER` and takes the first
        engine that can run this model here (package installed, dtype supported, CPU) and
        passes its parity probe.
    fast_prelu : bool
        Run a checkpoint graph's native PReLU layers in the fast form (same numbers).
    image_hw : (int, int), optional
        Input size (default: the zoo network's face size, else the file's, else 112x112).
    dtype : {"float32", "bfloat16", "float16"}
        Compute precision; the output is float32 either way.
    """
    source = model_source(model, epoch, layer)
    missing = [path for path in source.files if not os.path.isfile(path)]
    if missing:
        raise CheckpointError(f"{missing[0]}: no such {'checkpoint' if source.kind == CHECKPOINT else 'model'} file")
    settings = Settings(ctx, dtype, tuple(image_hw) if image_hw else None, fast_prelu)
    if source.kind == TORCH:
        return _converted(source, settings, engine)
    if engine != "auto":
        return ENGINES.get(engine)(source, settings)
    return _auto(source, settings)


def _converted(source: ModelSource, settings: Settings, engine: str) -> EmbeddingModel:
    """A PyTorch state dict, run as the checkpoint of its zoo network (written to a temporary
    folder for the engines to read, gone once they have)."""
    import tempfile

    from insightgluon.convert.source import load_converted, write_checkpoint

    converted = load_converted(source.path)
    logger.info("%s: arcface_torch %s, run as its converted checkpoint", source.path, converted.network)
    with tempfile.TemporaryDirectory(prefix="insightgluon-convert-") as folder:
        prefix = os.path.join(folder, os.path.splitext(os.path.basename(source.path))[0])
        write_checkpoint(converted, prefix)
        checkpoint = ModelSource(CHECKPOINT, prefix, 0, source.layer)
        if engine != "auto":
            return ENGINES.get(engine)(checkpoint, settings)
        return _auto(checkpoint, settings)


def _auto(source: ModelSource, settings: Settings) -> EmbeddingModel:
    *faster, last = AUTO_ORDER[source.kind]
    for name in faster:
        try:
            model = ENGINES.get(name)(source, settings)
        except (EngineUnavailable, CheckpointError) as err:
            logger.info("%s: engine auto skips %s (%s)", source.label, name, err)
            continue
        return _chosen(source, settings, model)
    return _chosen(source, settings, ENGINES.get(last)(source, settings))


def _chosen(source: ModelSource, settings: Settings, model: EmbeddingModel) -> EmbeddingModel:
    logger.info("%s: engine auto chose %s, the fastest engine here that runs it in %s", source.label,
                model.engine if model.engine not in ("zoo", "graph") else "mxnet", settings.dtype)
    return model
