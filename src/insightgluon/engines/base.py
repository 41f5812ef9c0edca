"""What every engine shares: the model a user names, the loaded model, the registry and the probe.

A *source* is what ``--model`` names: an MXNet checkpoint ``prefix,epoch``, an ONNX file or an
OpenVINO IR (``.xml`` beside its ``.bin``). An *engine* turns a source into an
:class:`EmbeddingModel` whose ``block`` is called like a Gluon block: raw RGB pixels 0-255
``(N, 3, H, W)`` in, the embedding ``(N, D)`` out, float32. Engines register a loader in
:data:`ENGINES` under their ``--engine`` name; a loader that cannot run a source (wrong kind,
missing package, unsupported dtype or device) raises :class:`EngineUnavailable`, which is what
``auto`` skips over.
"""
import logging
import os
from typing import NamedTuple, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError, ConfigError, first_line
from insightgluon.parity import max_relative
from insightgluon.registry import Registry

logger = logging.getLogger(__name__)

#: ``--engine`` name -> ``loader(source, settings) -> EmbeddingModel``.
ENGINES = Registry("engine")

#: Kinds of model file an engine may take. A PyTorch state dict (``TORCH``) runs as the checkpoint
#: it converts to (:mod:`insightgluon.convert`).
CHECKPOINT, ONNX, IR, TORCH = "checkpoint", "onnx", "openvino-ir", "pytorch"


class EngineUnavailable(ConfigError):
    """This engine cannot run this model here (kind of file, package, dtype or device)."""


class ModelSource(NamedTuple):
    """A model as the user named it: ``kind`` is :data:`CHECKPOINT`, :data:`ONNX`, :data:`IR` or :data:`TORCH`."""

    kind: str
    path: str
    epoch: int = 0
    layer: str = "fc1"

    @property
    def label(self) -> str:
        return f"{self.path},{self.epoch}" if self.kind == CHECKPOINT else self.path

    @property
    def files(self) -> Tuple[str, ...]:
        """The files the model is read from."""
        if self.kind == CHECKPOINT:
            from insightgluon.model_io import checkpoint_paths

            return checkpoint_paths(self.path, self.epoch)
        if self.kind == IR:
            return self.path, os.path.splitext(self.path)[0] + ".bin"
        return (self.path,)


def model_source(spec, epoch: Optional[int] = None, layer: str = "fc1") -> ModelSource:
    """The :class:`ModelSource` of ``prefix,epoch``, ``(prefix, epoch)``, ``x.onnx``, ``x.xml`` or ``x.pth``."""
    if isinstance(spec, ModelSource):
        return spec
    if epoch is not None:
        return ModelSource(CHECKPOINT, str(spec), int(epoch), layer)
    text = str(spec).strip()
    suffix = os.path.splitext(text)[1].lower()
    kinds = {".onnx": ONNX, ".xml": IR, ".pth": TORCH, ".pt": TORCH}
    if suffix in kinds:  # (load_embedding_model checks that its files exist)
        return ModelSource(kinds[suffix], text, 0, layer)
    from insightgluon.model_io import parse_model_spec

    models = parse_model_spec(text)
    if len(models) != 1:
        raise CheckpointError(f"model '{text}': give exactly one prefix,epoch, model.onnx, model.xml or backbone.pth")
    return ModelSource(CHECKPOINT, models[0][0], models[0][1], layer)


class Settings(NamedTuple):
    """How to run a source: the same for every engine a choice is made among."""

    ctx: object = None
    dtype: str = "float32"
    image_hw: Optional[Tuple[int, int]] = None
    fast_prelu: bool = True


class EmbeddingModel(NamedTuple):
    """A loaded embedding network and how it runs.

    ``engine`` is the registered name of what runs it; ``network``/``options`` name the zoo
    network it is (also when an ONNX engine runs that network's export); ``via`` says what an
    ONNX engine runs (``"the ONNX export of zoo network y1"``, a file name); ``image_hw`` is the
    input size it was checked at; ``parity`` the probe's figure (max relative difference in
    float32, min cosine otherwise) when one was measured.
    """

    block: object
    engine: str
    network: str = ""
    options: Optional[dict] = None
    image_hw: Tuple[int, int] = (112, 112)
    dtype: str = "float32"
    via: str = ""
    parity: Optional[float] = None

    def describe(self) -> str:
        precision = "" if self.dtype == "float32" else f" in {self.dtype}"
        if self.engine == "graph":
            return "the checkpoint's own graph" + precision
        if self.engine == "zoo":
            opts = ", ".join(f"{k}={v}" for k, v in sorted((self.options or {}).items()))
            return f"zoo network {self.network}" + (f" ({opts})" if opts else "") + precision
        return f"{self.engine}{precision} on {self.via}"


class HostRunner:
    """Base of the engines that compute on the host from NumPy (onnxruntime, OpenVINO).

    Called like a Gluon block: ``(N, 3, H, W)`` float32 raw pixels in - a NumPy array, or an
    NDArray for which an NDArray comes back - and ``(N, D)`` float32 out. Subclasses set
    ``runtime`` and ``label`` and implement ``_run(pixels) -> array``; a failure becomes one
    line naming the model.
    """

    #: :class:`~insightgluon.eval.embed.Embedder` hands such a model the NumPy batch itself.
    runs_on_host = True
    runtime = "the engine"
    label = "model"

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch):
        nd = hasattr(batch, "asnumpy")
        pixels = np.ascontiguousarray(batch.asnumpy() if nd else batch, dtype=np.float32)
        try:
            out = self._run(pixels)
        except Exception as err:  # the runtimes raise their own exception types
            raise CheckpointError(f"{self.label}: {self.runtime} fails on a batch of shape {pixels.shape} "
                                  f"({first_line(err)})")
        if nd:
            import mxnet as mx

            return mx.nd.array(out)
        return out

    def hybridize(self, *args, **kwargs) -> None:
        """Nothing to do: the runtime optimised the graph when it loaded it."""


def fixed_image_size(size, source, settings, shape) -> Tuple[int, int]:
    """``(H, W)`` of a model file's input ``size``, else ``settings.image_hw``, else one line saying so."""
    height, width = size
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    if settings.image_hw:
        return tuple(settings.image_hw)
    raise CheckpointError(f"{source.path}: input {shape} has no fixed image size; give one (--image-size)")


def first_context(ctx):
    """The first device of ``ctx`` (one context, a list, or None for the CPU)."""
    import mxnet as mx

    if isinstance(ctx, (list, tuple)):
        return ctx[0] if ctx else mx.cpu()
    return ctx or mx.cpu()


def require_cpu(ctx, engine: str) -> None:
    """:class:`EngineUnavailable` unless every device of ``ctx`` is a CPU."""
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    devices = [c for c in contexts if c is not None and getattr(c, "device_type", "cpu") != "cpu"]
    if devices:
        raise EngineUnavailable(f"engine {engine} runs on the CPU; got devices {', '.join(map(str, devices))}")


# --- the parity probe --------------------------------------------------------------------------

#: float32: largest relative difference (max |a - b| / max |b|) to the reference.
FLOAT32_TOLERANCE = 1e-4
#: Reduced precision: smallest cosine similarity of any probe embedding to the reference's.
MIN_COSINE = {"bfloat16": 0.995, "float16": 0.999}


class ParityProbe(NamedTuple):
    """An engine's output on random raw pixels against a float32 reference's."""

    dtype: str
    max_rel: float
    min_cosine: float

    @property
    def figure(self) -> float:
        return self.max_rel if self.dtype == "float32" else self.min_cosine

    @property
    def passed(self) -> bool:
        if self.dtype == "float32":
            return self.max_rel <= FLOAT32_TOLERANCE
        return self.min_cosine >= MIN_COSINE[self.dtype]

    def __str__(self) -> str:
        if self.dtype == "float32":
            return f"max rel diff {self.max_rel:.2g} (tolerance {FLOAT32_TOLERANCE:g})"
        return f"min cosine {self.min_cosine:.6f} (at least {MIN_COSINE[self.dtype]:g})"


def probe_batch(image_hw: Tuple[int, int], count: int = 4, seed: int = 0) -> np.ndarray:
    """Random raw pixels ``(count, 3, H, W)`` float32, the same for every engine."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (count, 3) + tuple(image_hw)).astype(np.float32)


def as_numpy(out) -> np.ndarray:
    """An engine's output (NDArray or array, maybe a list) as float32 ``(N, D)``."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "asnumpy"):
        if out.dtype != np.float32:  # a network computing in bfloat16/float16
            import mxnet as mx

            out = mx.nd.amp_cast(out, dtype="float32")
        out = out.asnumpy()
    out = np.asarray(out, dtype=np.float32)
    return out.reshape(out.shape[0], -1)


def run_block(block, pixels: np.ndarray) -> np.ndarray:
    """Any engine's ``block`` on NumPy raw pixels, as float32 ``(N, D)``."""
    if getattr(block, "runs_on_host", False):
        return as_numpy(block(pixels))
    import mxnet as mx

    return as_numpy(block(mx.nd.array(pixels)))


def probe_parity(block, reference: np.ndarray, pixels: np.ndarray, dtype: str) -> ParityProbe:
    """Run ``block`` on ``pixels`` and compare with ``reference`` (the float32 output on them)."""
    got = run_block(block, pixels)
    if got.shape != reference.shape:
        raise CheckpointError(f"output shape {got.shape} differs from the reference's {reference.shape}")
    max_rel = max_relative(got, reference)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = (got * reference).sum(axis=1) / np.maximum(norms, 1e-30)
    min_cos = float(cosines.min()) if np.all(np.isfinite(cosines)) else float("-inf")
    return ParityProbe(dtype, max_rel, min_cos)
