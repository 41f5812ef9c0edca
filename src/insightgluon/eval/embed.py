"""Batched face embedding with horizontal-flip test-time augmentation.

One routine serves verification (``.bin`` sets), MegaFace feature generation
and 1:N search: images go through the model in fixed-size batches (the last
batch re-uses a full window, as the 2018 code did, so a hybridized
``static_shape`` graph never recompiles), originals and their mirror images
are forwarded together, and the two embeddings are summed and L2-normalised.
"""
from typing import Callable, Iterable, Optional, Tuple, Union

import numpy as np

__all__ = ["Embedder", "embed_images", "l2_normalize", "as_ctx_list"]


def l2_normalize(x: np.ndarray, axis: int = 1, eps: float = 1e-12) -> np.ndarray:
    """Divide each row of ``x`` by its L2 norm (zero rows stay zero).

    Matches ``sklearn.preprocessing.normalize`` as used by the legacy code.
    """
    x = np.asarray(x, dtype=np.float32)
    norm = np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=axis, keepdims=True))
    return (x / np.maximum(norm, eps)).astype(np.float32)


def as_ctx_list(ctx=None) -> list:
    """Normalise ``None`` / one context / a list of contexts to a list."""
    import mxnet as mx

    if ctx is None:
        return [mx.cpu()]
    if isinstance(ctx, (list, tuple)):
        return list(ctx) or [mx.cpu()]
    return [ctx]


class Embedder:
    """Embed uint8 face crops with a Gluon model, optionally flip-augmented.

    Parameters
    ----------
    model : callable
        Any Gluon block (or callable) mapping an NDArray ``(N, 3, H, W)`` of raw
        RGB values 0..255 to ``(N, D)``; a tuple/list output uses its first item.
        A model with ``runs_on_host = True`` (the ONNX engines) is given the NumPy
        batch itself and returns NumPy.
    ctx_list : list of mx.Context
        Devices holding the model's parameters; each batch is split across them.
    batch_size : int
        Images per forward (their flips are forwarded in the same call).
    flip : bool
        Add the embedding of the mirrored image before normalising.
    """

    def __init__(self, model: Callable, ctx_list=None, batch_size: int = 64, flip: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.ctx_list = as_ctx_list(ctx_list)
        self.batch_size = int(batch_size)
        self.flip = bool(flip)

    def forward(self, images_nhwc: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) embeddings of one batch.

        Returns ``(N, D)`` float32 for ``flip=False`` and ``(2, N, D)``
        (originals, mirrors) for ``flip=True``.
        """
        import mxnet as mx

        images = np.asarray(images_nhwc)
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"expected images (N, H, W, 3), got shape {images.shape}")
        batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.flip:
            batch = np.concatenate([batch, batch[:, :, :, ::-1]], axis=0)
        if getattr(self.model, "runs_on_host", False):  # an ONNX engine: NumPy in, NumPy out
            emb = np.asarray(self.model(batch), dtype=np.float32).reshape(len(batch), -1)
            return emb.reshape(2, len(images), -1) if self.flip else emb
        parts = mx.gluon.utils.split_and_load(batch, self.ctx_list, even_split=False)
        outs = []
        for part in parts:
            out = self.model(part)
            if isinstance(out, (list, tuple)):
                out = out[0]
            if out.dtype != np.float32:  # a network computing in bfloat16/float16
                out = mx.nd.amp_cast(out, dtype="float32")
            outs.append(out.reshape((out.shape[0], -1)).asnumpy())
        emb = np.concatenate(outs, axis=0).astype(np.float32, copy=False)
        return emb.reshape(2, len(images), -1) if self.flip else emb

    def batches(self, num: int) -> Iterable[Tuple[int, int, int]]:
        """Yield ``(start, stop, keep)``: forward ``[start, stop)``, keep the last ``keep`` rows.

        Every window has ``batch_size`` rows when ``num >= batch_size``; the last
        window is shifted back to end at ``num``, as the legacy evaluator did.
        """
        bs = min(self.batch_size, num)
        for begin in range(0, num, self.batch_size):
            end = min(begin + self.batch_size, num)
            start = max(0, end - bs)
            yield start, end, end - begin

    def embed(self, images_nhwc: np.ndarray, progress: Union[str, bool, None] = None,
              keep_plain: bool = False):
        """Embed every image; see :func:`embed_images` for the return values.

        ``progress`` labels the progress report (default ``"embedding"``);
        False reports nothing (a caller counting a larger job itself).
        ``keep_plain`` also returns the normalised embeddings of the originals
        alone (no flip), which costs nothing extra.
        """
        from insightgluon.progress import Progress

        num = len(images_nhwc)
        if num == 0:
            raise ValueError("no images to embed")
        emb = plain = None
        norm_sum, norm_count = 0.0, 0
        with Progress(total=num, desc=progress or "embedding", unit="img", leave=False,
                      enabled=progress is not False) as bar:
            for start, end, keep in self.batches(num):
                raw = self.forward(images_nhwc[start:end])
                raw = raw[:, -keep:] if self.flip else raw[-keep:]
                norms = np.linalg.norm(raw, axis=-1)
                norm_sum += float(norms.sum())
                norm_count += norms.size
                summed = raw.sum(axis=0) if self.flip else raw
                if emb is None:
                    emb = np.empty((num, summed.shape[-1]), dtype=np.float32)
                    plain = np.empty_like(emb) if keep_plain else None
                emb[end - keep:end] = summed
                if keep_plain:
                    plain[end - keep:end] = raw[0] if self.flip else raw
                bar.update(keep)
        result = (l2_normalize(emb), norm_sum / norm_count)
        return result + (l2_normalize(plain),) if keep_plain else result


def embed_images(model: Callable, images_uint8_nhwc: np.ndarray, ctx_list=None,
                 batch_size: int = 64, flip: bool = True,
                 progress: Optional[str] = None) -> Tuple[np.ndarray, float]:
    """Embed face crops in batches, flip-summed and L2-normalised.

    Parameters
    ----------
    model : callable
        Maps NDArray ``(N, 3, H, W)`` raw RGB 0..255 to ``(N, D)``.
    images_uint8_nhwc : np.ndarray
        ``(N, H, W, 3)`` RGB uint8 images.
    ctx_list : list of mx.Context, optional
        Devices the model lives on (default CPU).
    batch_size : int
        Images per forward.
    flip : bool
        Sum the embeddings of each image and its mirror before normalising.
    progress : str, optional
        Label of the progress report (a bar on a terminal, log lines otherwise).

    Returns
    -------
    emb : np.ndarray
        ``(N, D)`` float32, unit rows.
    xnorm : float
        Mean L2 norm of all raw embeddings (originals and mirrors), the
        legacy ``XNorm``.
    """
    return Embedder(model, ctx_list, batch_size, flip).embed(images_uint8_nhwc, progress)


def parse_ctx(spec: str = "", gpus: str = "") -> list:
    """Devices from ``--ctx`` (``cpu``, ``cpu:0,cpu:1``, ``gpu:0``) or legacy ``--gpu 0,1``.

    An empty spec means one CPU. Raises :class:`ConfigError` on a malformed entry.
    """
    import mxnet as mx

    from insightgluon.errors import ConfigError

    if gpus.strip():
        spec = ",".join(f"gpu:{g.strip()}" for g in gpus.split(",") if g.strip())
    ctxs = []
    for item in filter(None, (s.strip() for s in (spec or "cpu").split(","))):
        kind, _, index = item.partition(":")
        if kind not in ("cpu", "gpu") or not (index or "0").isdigit():
            raise ConfigError(f"--ctx '{item}': expected cpu, cpu:N or gpu:N")
        ctxs.append(getattr(mx, kind)(int(index or 0)))
    return ctxs or [mx.cpu()]
