"""onnxruntime as an evaluation engine, and the export of a loaded embedding model.

:func:`export_embedding` writes the ONNX file of an
:class:`insightgluon.model_io.EmbeddingModel`: a zoo network is exported through its
own hybridized graph (fast PReLU, one depthwise convolution where the 2018 Xception
sliced channels), any other checkpoint through its saved graph. ``insightgluon export``
and ``--engine onnxruntime`` share it.

:class:`OnnxEmbedding` runs such a file and is called like a Gluon block, NDArray
``(N, 3, H, W)`` raw RGB 0-255 in, NDArray ``(N, D)`` out, so the batched flip
embedding of :mod:`insightgluon.eval.embed` (verification, MegaFace, face search)
takes it unchanged. :func:`load_onnxruntime_model` puts both together for
``load_embedding_model(engine="onnxruntime")``.
"""
import logging
import os
import tempfile
from typing import Dict, Optional, Tuple

from insightgluon.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


def _threads() -> int:
    """onnxruntime's intra-op threads: MXNet's OpenMP budget when one is set, else its default."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


class OnnxEmbedding:
    """An ONNX embedding model in onnxruntime (CPU), called like a Gluon block.

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

    def __init__(self, path: str, label: Optional[str] = None, threads: Optional[int] = None):
        from insightgluon.export.onnx import onnx_session

        self.label = label or path
        self.session = onnx_session(path, self.label, threads=_threads() if threads is None else threads)
        self.input = self.session.get_inputs()[0]

    @property
    def image_size(self) -> Tuple[object, object]:
        """``(H, W)`` of the input; entries that are not fixed are names or None."""
        return tuple(self.input.shape[2:4])

    def __call__(self, batch):
        """NDArray or array ``(N, 3, H, W)`` float32 raw pixels -> NDArray ``(N, D)`` on the CPU."""
        import mxnet as mx
        import numpy as np

        pixels = batch.asnumpy() if hasattr(batch, "asnumpy") else batch
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        try:
            out = self.session.run(None, {self.input.name: pixels})[0]
        except Exception as err:  # onnxruntime raises its own exception hierarchy
            text = str(err).strip()
            raise CheckpointError(f"{self.label}: onnxruntime fails on a batch of shape {pixels.shape} "
                                  f"({text.splitlines()[0] if text else type(err).__name__})")
        return mx.nd.array(out)

    def hybridize(self, *args, **kwargs) -> None:
        """Nothing to do: onnxruntime optimises the graph when the session is made."""


def export_embedding(model, prefix: str, epoch: int, output: str, layer: str = "fc1",
                     image_hw: Optional[Tuple[int, int]] = None, metadata: Optional[Dict[str, str]] = None,
                     tolerance: Optional[float] = None, fast_prelu: bool = False):
    """Export a loaded :class:`~insightgluon.model_io.EmbeddingModel` of ``prefix,epoch`` to ONNX.

    Parameters
    ----------
    model : EmbeddingModel
        ``engine`` ``"zoo"``: its network is exported (``source`` and ``network`` go into
        the metadata); otherwise the checkpoint's saved graph cut at ``layer``.
    output : str
        ``.onnx`` file (written atomically, parity-checked).
    image_hw : (int, int), optional
        Input size (default ``model.image_hw``).
    metadata, tolerance
        As :func:`insightgluon.export.onnx.export_onnx`.
    fast_prelu : bool
        Export a saved graph's native PReLU layers in the fast form (as a zoo network's
        are): onnxruntime runs it faster than its ``PRelu`` (``bench/onnx_prelu.py``).

    Returns
    -------
    ParityReport
    """
    from insightgluon.export.onnx import DEFAULT_TOLERANCE, export_onnx

    image_hw = tuple(image_hw or model.image_hw)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if model.engine != "zoo":
        return export_onnx(prefix, epoch, output, layer, image_hw, metadata=metadata,
                           tolerance=tolerance, fast_prelu=fast_prelu)
    import mxnet as mx

    with tempfile.TemporaryDirectory() as tmp:
        zoo_prefix = os.path.join(tmp, "zoo")
        model.block.hybridize()
        model.block(mx.nd.zeros((1, 3) + image_hw))
        model.block.export(zoo_prefix, epoch=0)
        values = dict(metadata or {}, source=f"{os.path.abspath(prefix)},{epoch}", network=model.describe())
        return export_onnx(zoo_prefix, 0, output, "fc1", image_hw, metadata=values, tolerance=tolerance)


def load_onnxruntime_model(prefix: str, epoch: int, layer: str = "fc1", ctx=None,
                           image_hw: Optional[Tuple[int, int]] = None):
    """``prefix,epoch`` exported to ONNX in a temporary folder and loaded in onnxruntime.

    The model exported is the one ``load_embedding_model(engine="auto")`` picks (the zoo
    network when the checkpoint provably is one, else its graph with its PReLU layers in
    the fast form); the export's parity check against MXNet must pass.

    Returns
    -------
    EmbeddingModel
        ``engine="onnxruntime"``, ``block`` an :class:`OnnxEmbedding`.
    """
    from insightgluon.model_io import EmbeddingModel, load_embedding_model

    _require_cpu(ctx)
    source = load_embedding_model(prefix, epoch, layer, engine="auto", fast_prelu=False, image_hw=image_hw)
    image_hw = tuple(image_hw or source.image_hw)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        report = export_embedding(source, prefix, epoch, path, layer, image_hw, fast_prelu=True)
        runner = OnnxEmbedding(path, label=f"{prefix},{epoch}")
    model = EmbeddingModel(runner, "onnxruntime", source.network, source.options, image_hw)
    logger.info("%s,%d: runs as %s (max rel diff to MXNet %.1g)", prefix, epoch, model.describe(),
                report.max_rel)
    return model


def _require_cpu(ctx) -> None:
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    devices = [c for c in contexts if c is not None and getattr(c, "device_type", "cpu") != "cpu"]
    if devices:
        raise ConfigError(f"engine onnxruntime runs on the CPU; got devices {', '.join(map(str, devices))}")
