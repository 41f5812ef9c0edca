"""Engine ``openvino``: an IR, an ONNX file or a checkpoint's ONNX export in OpenVINO on the CPU.

OpenVINO reads our ONNX export unmodified and an IR written by ``insightgluon export --format
openvino``. It computes in the precision asked for - ``float32`` (``INFERENCE_PRECISION_HINT``
``f32``: its default on a CPU with bfloat16 instructions is bf16, so float32 is always set
explicitly) or ``bfloat16`` where the CPU has it - and every load ends with a parity probe on
random raw pixels against a float32 reference: MXNet for a checkpoint, onnxruntime for an ONNX
file, OpenVINO's own float32 for an IR run in bfloat16.
"""
import logging
import tempfile
from typing import Optional, Tuple

from insightgluon.engines.base import (CHECKPOINT, ENGINES, IR, ONNX, EmbeddingModel, EngineUnavailable,
                                       HostRunner, fixed_image_size, probe_batch, probe_parity, require_cpu,
                                       run_block)
from insightgluon.errors import ConfigError
from insightgluon.export.onnx import ParityError
from insightgluon.openvino_cpu import CAPABILITIES, PRECISIONS, capabilities, compile_model, require_openvino
from insightgluon.runtime import host_threads

logger = logging.getLogger(__name__)


class OpenVinoEmbedding(HostRunner):
    """A compiled OpenVINO embedding model, called like a Gluon block (:class:`HostRunner`).

    ``metadata`` holds the model's ``insightgluon.*`` entries.
    """

    runtime = "OpenVINO"

    def __init__(self, model, dtype: str = "float32", label: str = "model", threads: Optional[int] = None):
        from insightgluon.export.openvino import metadata

        self.label = label
        self.dtype = dtype
        self.metadata = metadata(model)
        self.input_shape = model.input(0).get_partial_shape()
        self.compiled = compile_model(model, dtype, host_threads() if threads is None else threads, label)
        self.request = self.compiled.create_infer_request()

    @property
    def image_size(self) -> Tuple[object, object]:
        """``(H, W)`` of the input; entries that are not fixed are None."""
        dims = [self.input_shape[i] for i in (2, 3)] if self.input_shape.rank.is_static else [None, None]
        return tuple(d.get_length() if d is not None and d.is_static else None for d in dims)

    def _run(self, pixels):
        return self.request.infer({0: pixels}, share_inputs=True)[self.compiled.output(0)].copy()


def check_precision(dtype: str) -> None:
    """:class:`EngineUnavailable` unless OpenVINO is importable and its CPU plug-in computes in ``dtype``."""
    try:
        require_openvino()
    except ConfigError as err:
        raise EngineUnavailable(str(err))
    if dtype not in PRECISIONS:
        raise EngineUnavailable(f"engine openvino computes in {', '.join(PRECISIONS)}, not {dtype}")
    if CAPABILITIES[dtype] not in capabilities():
        raise EngineUnavailable(f"engine openvino: this CPU has no {CAPABILITIES[dtype]} support "
                                f"(OpenVINO lists {', '.join(capabilities())})")


@ENGINES.register("openvino")
def load_openvino(source, settings) -> EmbeddingModel:
    """``source`` (IR, ONNX or a checkpoint's ONNX export) in OpenVINO at ``settings.dtype``, probed."""
    from insightgluon.engines.onnxruntime import OnnxEmbedding, export_checkpoint, exported_from
    from insightgluon.export.openvino import read_model

    check_precision(settings.dtype)
    require_cpu(settings.ctx, "openvino")
    if source.kind == CHECKPOINT:
        with tempfile.TemporaryDirectory() as folder:
            reference, path, _ = export_checkpoint(source, settings, folder)
            runner = OpenVinoEmbedding(read_model(path), settings.dtype, source.label)
        image_hw, via = reference.image_hw, exported_from(reference)
        network, options, against = reference.network, reference.options, "MXNet"
    elif source.kind in (ONNX, IR):
        model = read_model(source.path)
        runner = OpenVinoEmbedding(model, settings.dtype, source.path)
        image_hw = fixed_image_size(runner.image_size, source, settings, runner.input_shape)
        via, network, options = source.path, "", None
        if source.kind == ONNX:
            reference, against = OnnxEmbedding(source.path), "onnxruntime"
        elif settings.dtype != "float32":
            reference, against = OpenVinoEmbedding(model, "float32", source.path), "OpenVINO f32"
        else:
            reference, against = None, ""
    else:
        raise EngineUnavailable(f"{source.label}: engine openvino cannot read a {source.kind}")
    parity = None
    if reference is not None:
        pixels = probe_batch(image_hw)
        want = run_block(reference.block if isinstance(reference, EmbeddingModel) else reference, pixels)
        probe = probe_parity(runner, want, pixels, settings.dtype)
        if not probe.passed:
            raise ParityError(f"{source.label}: OpenVINO {settings.dtype} differs from {against}: {probe}")
        parity = probe.figure
        logger.info("%s: OpenVINO %s vs %s: %s", source.label, settings.dtype, against, probe)
    return EmbeddingModel(runner, "openvino", network, options, tuple(image_hw), settings.dtype, via, parity)
