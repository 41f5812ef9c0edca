"""Engine ``onnxruntime``: an ONNX file, or a checkpoint's ONNX export, in onnxruntime on the CPU.

A checkpoint is exported first, in a temporary folder, from what engine ``mxnet`` runs (its
zoo network when it provably is one, else its graph with the fast PReLU), and the export's
parity check against MXNet must pass (:func:`insightgluon.export.onnx.export_embedding`).
It computes in float32 only (``--dtype bf16`` goes to OpenVINO or MXNet).
"""
import logging
import os
import tempfile
from typing import Optional, Tuple

from insightgluon.engines.base import (CHECKPOINT, ENGINES, ONNX, EmbeddingModel, EngineUnavailable, HostRunner,
                                       Settings, fixed_image_size, require_cpu)
from insightgluon.runtime import host_threads

logger = logging.getLogger(__name__)


class OnnxEmbedding(HostRunner):
    """An ONNX embedding model in onnxruntime (CPU), called like a Gluon block (:class:`HostRunner`).

    Parameters
    ----------
    path : str
        ``.onnx`` file with one input ``(N, 3, H, W)`` and one output ``(N, D)``. The
        session holds the model in memory; the file may be deleted afterwards.
    label : str, optional
        Names the model in error messages (default ``path``).
    threads : int, optional
        Intra-op threads (default: ``OMP_NUM_THREADS`` if set, else onnxruntime's choice).
    """

    runtime = "onnxruntime"

    def __init__(self, path: str, label: Optional[str] = None, threads: Optional[int] = None):
        from insightgluon.export.onnx import onnx_session

        self.label = label or path
        self.session = onnx_session(path, self.label, threads=host_threads() if threads is None else threads)
        self.input = self.session.get_inputs()[0]

    @property
    def image_size(self) -> Tuple[object, object]:
        """``(H, W)`` of the input; entries that are not fixed are names or None."""
        return tuple(self.input.shape[2:4])

    def _run(self, pixels):
        return self.session.run(None, {self.input.name: pixels})[0]


def export_checkpoint(source, settings, folder: str):
    """Export what engine ``mxnet`` runs for ``source`` to ``folder/model.onnx``, parity-checked.

    Returns ``(mxnet_model, onnx_path, ParityReport)``; the MXNet model (float32) is the
    reference the ONNX engines are probed against.
    """
    from insightgluon.engines.zoo import load_mxnet
    from insightgluon.export.onnx import export_embedding

    mxnet_model = load_mxnet(source, Settings(None, "float32", settings.image_hw, fast_prelu=False))
    image_hw = tuple(settings.image_hw or mxnet_model.image_hw)
    path = os.path.join(folder, "model.onnx")
    report = export_embedding(mxnet_model, source.path, source.epoch, path, source.layer, image_hw,
                              fast_prelu=True)
    return mxnet_model._replace(image_hw=image_hw), path, report


def exported_from(model: EmbeddingModel) -> str:
    """What an ONNX engine runs when it runs ``model``'s export."""
    return f"the ONNX export of {model.describe()}"


@ENGINES.register("onnxruntime")
def load_onnxruntime(source, settings) -> EmbeddingModel:
    """``source`` (an ONNX file or a checkpoint's export) in onnxruntime, float32, on the CPU."""
    if source.kind not in (CHECKPOINT, ONNX):
        raise EngineUnavailable(f"{source.label}: onnxruntime runs ONNX files and checkpoints, not "
                                "OpenVINO IR (use --engine openvino)")
    if settings.dtype != "float32":
        raise EngineUnavailable("engine onnxruntime computes in float32 only; drop --dtype or use "
                                "--engine openvino or an MXNet engine")
    require_cpu(settings.ctx, "onnxruntime")
    if source.kind == ONNX:
        runner = OnnxEmbedding(source.path)
        image_hw = fixed_image_size(runner.image_size, source, settings, runner.input.shape)
        return EmbeddingModel(runner, "onnxruntime", image_hw=image_hw, via=source.path)
    with tempfile.TemporaryDirectory() as folder:
        reference, path, report = export_checkpoint(source, settings, folder)
        runner = OnnxEmbedding(path, label=source.label)
    model = EmbeddingModel(runner, "onnxruntime", reference.network, reference.options, reference.image_hw,
                           via=exported_from(reference), parity=report.max_rel)
    logger.info("%s: runs as %s (max rel diff to MXNet %.1g)", source.label, model.describe(), report.max_rel)
    return model
