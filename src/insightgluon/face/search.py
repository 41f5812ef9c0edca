"""Face verification and gallery search with a deployed model (checkpoint, ONNX or OpenVINO IR).

:class:`FaceModel` hides where the model runs: any engine of :mod:`insightgluon.engines`
(by default the fastest one installed that passes its parity probe). Every engine takes raw
RGB pixels, and faces are embedded the same way as in verification (flip-summed, L2
normalised), so a threshold calibrated on a ``.bin`` applies as is.
"""
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.data.image import IMAGE_EXTENSIONS
from insightgluon.errors import ConfigError, DataFormatError

logger = logging.getLogger(__name__)

CACHE_NAME = ".insightgluon-embeddings.npz"


class FaceModel:
    """An embedding model: callable on NDArray ``(N, 3, H, W)`` raw RGB, returning ``(N, D)``.

    Use :meth:`load`. ``metadata`` holds what was stored with the model
    (``threshold_cos``, ``far``, ``emb_size``, ...); ``image_size`` is
    ``(height, width)``; ``files`` are the files the model was read from and
    ``engine`` what runs them (with its dtype when that is not float32).
    """

    def __init__(self, name: str, forward, image_size: Tuple[int, int], metadata: Dict[str, str],
                 files: Sequence[str] = (), engine: str = ""):
        self.name = name
        self.files = list(files)
        self._forward = forward
        self.image_size = image_size
        self.metadata = metadata
        self.engine = engine
        # An ONNX engine takes NumPy batches as they are (see insightgluon.eval.embed.Embedder).
        self.runs_on_host = bool(getattr(forward, "runs_on_host", False))

    @classmethod
    def load(cls, spec: str, ctx=None, engine: str = "auto", dtype: str = "float32") -> "FaceModel":
        """Load ``prefix,epoch`` (layer and size from its deployment metadata), ``.onnx`` or ``.xml``.

        ``engine`` and ``dtype`` say what runs it (:func:`insightgluon.engines.load_embedding_model`:
        by default the fastest engine installed that passes its parity probe).
        """
        from insightgluon.engines import CHECKPOINT, IR, ONNX, load_embedding_model, model_source

        source = model_source(spec)
        meta: Dict[str, str] = {}
        image_hw = None
        if source.kind == CHECKPOINT:
            from insightgluon.export.deploy import read_checkpoint_metadata

            meta = read_checkpoint_metadata(source.path, source.epoch)
            side = int(meta.get("image_size", "112x112").split("x")[0])
            source, image_hw = source._replace(layer=meta.get("layer", "fc1")), (side, side)
        model = load_embedding_model(source, ctx=ctx, engine=engine, image_hw=image_hw, dtype=dtype)
        logger.info("%s runs as %s", spec, model.describe())
        model.block.hybridize(static_alloc=True, static_shape=True)
        if source.kind in (ONNX, IR):  # (a PyTorch state dict carries none)
            meta = _file_metadata(source.path)
        label = model.engine if dtype == "float32" else f"{model.engine} {dtype}"
        return cls(spec, model.block, tuple(model.image_hw), meta, source.files, label)

    def __call__(self, batch):
        return self._forward(batch)

    @property
    def threshold(self) -> Optional[float]:
        """Calibrated cosine threshold stored with the model, if any."""
        value = self.metadata.get("threshold_cos")
        return float(value) if value is not None else None

    def embed(self, images_rgb: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB aligned faces -> ``(N, D)`` unit embeddings."""
        from insightgluon.eval.embed import embed_images

        return embed_images(self, images_rgb, batch_size=batch_size, flip=True)[0]


def _file_metadata(path: str) -> Dict[str, str]:
    """The ``insightgluon.*`` metadata of an ONNX file or an OpenVINO IR."""
    if path.lower().endswith(".onnx"):
        from insightgluon.export.onnx import read_metadata

        return read_metadata(path)
    from insightgluon.export.openvino import metadata, read_model

    return metadata(read_model(path))


class FaceCropper:
    """Turns a photo file into the model's input crop.

    With ``aligned=True`` the file must already be an aligned face of the
    model's size. Otherwise MTCNN finds the faces and the highest-scoring one
    is aligned with the five-point template; ``detector_engine`` runs its three
    networks (``mxnet``, ``openvino`` or ``auto``, see :class:`~insightgluon.align.mtcnn.MTCNN`).
    """

    def __init__(self, image_size: Tuple[int, int], aligned: bool = False, ctx=None,
                 detector_engine: str = "auto"):
        self.image_size = tuple(image_size)
        self.aligned = aligned
        self._ctx = ctx
        self._engine = detector_engine
        self._detector = None

    def __call__(self, path: str) -> np.ndarray:
        from insightgluon.data.image import decode_jpeg

        try:
            with open(path, "rb") as stream:
                rgb = decode_jpeg(stream.read(), source=path)
        except OSError as err:
            raise DataFormatError(f"{path}: cannot read image ({err.strerror})")
        if self.aligned:
            if rgb.shape[:2] != self.image_size:
                raise DataFormatError(f"{path}: aligned input must be {self.image_size[0]}x"
                                      f"{self.image_size[1]}, got {rgb.shape[0]}x{rgb.shape[1]}")
            return rgb
        return self._align(rgb, path)

    def _align(self, rgb: np.ndarray, path: str) -> np.ndarray:
        from insightgluon.align.mtcnn import MTCNN
        from insightgluon.align.transform import align_face

        if self._detector is None:
            self._detector = MTCNN(ctx=self._ctx, engine=self._engine)
        boxes, landmarks = self._detector.detect(rgb)
        if len(boxes) == 0:
            raise DataFormatError(f"{path}: no face detected (use --aligned for pre-aligned crops)")
        best = int(np.argmax(boxes[:, 4]))
        return align_face(rgb, landmarks[best], self.image_size)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


@dataclass(frozen=True)
class Match:
    """One search result: identity folder, best cosine similarity and the image giving it."""

    identity: str
    score: float
    image: str


def _flat_identity(name: str) -> str:
    """``alice.jpg`` and ``alice-2.jpg`` are both ``alice`` (Open Model Zoo's gallery convention)."""
    stem = os.path.splitext(name)[0]
    base, dash, number = stem.rpartition("-")
    return base if dash and base and number.isdigit() else stem


def gallery_files(gallery: str) -> List[Tuple[str, str]]:
    """``(identity, relative path)`` of every gallery image, sorted.

    ``GALLERY/<identity>/<image>``, and flat files ``GALLERY/<name>.jpg``, ``<name>-2.jpg``, ...
    (identity ``name``); both layouts may be mixed.
    """
    if not os.path.isdir(gallery):
        raise DataFormatError(f"{gallery}: gallery is not a directory")
    files = []
    for entry in sorted(os.listdir(gallery)):
        path = os.path.join(gallery, entry)
        if entry.startswith("."):
            continue
        if os.path.isdir(path):
            files += [(entry, os.path.join(entry, name)) for name in sorted(os.listdir(path))
                      if name.lower().endswith(IMAGE_EXTENSIONS)]
        elif entry.lower().endswith(IMAGE_EXTENSIONS):
            files.append((_flat_identity(entry), entry))
    if not files:
        raise DataFormatError(f"{gallery}: no gallery images (expected GALLERY/<identity>/<image>.jpg "
                              "or GALLERY/<name>.jpg, <name>-2.jpg)")
    return sorted(files)


class Gallery:
    """Embeddings of a gallery folder, cached in ``gallery/.insightgluon-embeddings.npz``.

    The cache is keyed by the model (path, size and modification time of its
    files, and the engine running them) and by each image's size and modification
    time, so only new or changed images are embedded again.
    """

    def __init__(self, root: str, model: FaceModel, cropper: FaceCropper, cache: bool = True,
                 skip_faceless: bool = False):
        self.root = root
        self.model = model
        self.cropper = cropper
        self.skip_faceless = skip_faceless
        self.cache_path = os.path.join(root, CACHE_NAME) if cache else None
        self.files = gallery_files(root)
        self.embeddings, self.embedded_now = self._embed_all()
        if skip_faceless:  # photos without a face are cached as NaN rows and left out here
            keep = ~np.isnan(self.embeddings).any(axis=1)
            if not keep.any():
                raise DataFormatError(f"{root}: no gallery photo has a face")
            self.files = [f for f, k in zip(self.files, keep) if k]
            self.embeddings = self.embeddings[keep]
        self.identities = [identity for identity, _ in self.files]

    def _stamp(self, rel: str) -> str:
        info = os.stat(os.path.join(self.root, rel))
        return f"{rel}|{info.st_size}|{info.st_mtime_ns}"

    def _model_key(self) -> str:
        parts = []
        for path in self.model.files:
            info = os.stat(path)
            parts.append(f"{os.path.abspath(path)}|{info.st_size}|{info.st_mtime_ns}")
        # Engines agree closely, not bit for bit: each keeps its own embeddings.
        parts.append(f"aligned={self.cropper.aligned}|engine={self.model.engine}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _load_cache(self, key: str) -> Dict[str, np.ndarray]:
        if not self.cache_path or not os.path.isfile(self.cache_path):
            return {}
        try:
            with np.load(self.cache_path, allow_pickle=False) as data:
                if str(data["model"]) != key:
                    return {}
                return dict(zip((str(s) for s in data["stamps"]), data["embeddings"]))
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s: ignoring unreadable cache (%s)", self.cache_path, err)
            return {}

    def _embed_all(self) -> Tuple[np.ndarray, int]:
        key = self._model_key()
        stamps = [self._stamp(rel) for _, rel in self.files]
        cached = self._load_cache(key)
        todo = [i for i, stamp in enumerate(stamps) if stamp not in cached]
        if todo:
            crops = {i: self._crop(os.path.join(self.root, self.files[i][1])) for i in todo}
            found = [i for i in todo if crops[i] is not None]
            fresh = self.model.embed(np.stack([crops[i] for i in found])) if found else None
            cached.update({stamps[i]: fresh[j] for j, i in enumerate(found)})
            cached.update({stamps[i]: np.full(fresh.shape[1] if found else 1, np.nan, np.float32)
                           for i in todo if crops[i] is None})
        width = max(len(v) for v in cached.values())
        embeddings = np.stack([cached[stamp] if len(cached[stamp]) == width else np.full(width, np.nan)
                               for stamp in stamps]).astype(np.float32)
        if todo and self.cache_path:
            self._save_cache(key, stamps, embeddings)
        logger.info("%s: %d images of %d identities (%d embedded now, %d from cache)", self.root,
                    len(stamps), len({identity for identity, _ in self.files}), len(todo),
                    len(stamps) - len(todo))
        return embeddings, len(todo)

    def _crop(self, path: str) -> Optional[np.ndarray]:
        """The aligned face of a gallery photo; None (with a warning) for one without a face."""
        try:
            return self.cropper(path)
        except DataFormatError as err:
            if not self.skip_faceless or "no face detected" not in str(err):
                raise
            logger.warning("%s: no face detected; left out of the gallery", path)
            return None

    def _save_cache(self, key: str, stamps: Sequence[str], embeddings: np.ndarray) -> None:
        try:
            fd, tmp = tempfile.mkstemp(suffix=".npz", dir=self.root)
            with os.fdopen(fd, "wb") as stream:
                np.savez(stream, model=np.array(key), stamps=np.array(stamps),
                         embeddings=embeddings)
            os.replace(tmp, self.cache_path)
        except OSError as err:
            logger.warning("%s: cannot write the embedding cache (%s)", self.cache_path, err)

    def identity_scores(self, probes: np.ndarray) -> Tuple[List[str], np.ndarray]:
        """Identities (sorted) and ``(faces, identities)`` scores: each identity's best cosine
        similarity over its photos, for unit embeddings ``probes`` ``(faces, D)``."""
        names = sorted(set(self.identities))
        column = {name: k for k, name in enumerate(names)}
        per_image = np.asarray(probes, np.float32).reshape(-1, self.embeddings.shape[1]) @ self.embeddings.T
        scores = np.full((per_image.shape[0], len(names)), -np.inf, np.float32)
        for j, identity in enumerate(self.identities):
            scores[:, column[identity]] = np.maximum(scores[:, column[identity]], per_image[:, j])
        return names, scores

    def search(self, probe: np.ndarray, top_k: int = 5) -> List[Match]:
        """The ``top_k`` identities most similar to ``probe`` (a unit embedding ``(D,)``).

        An identity scores the best cosine similarity over its images.
        """
        if top_k < 1:
            raise ConfigError(f"top-k must be at least 1, got {top_k}")
        scores = self.embeddings @ np.asarray(probe, np.float32).ravel()  # (images,)
        best: Dict[str, Tuple[float, str]] = {}
        for (identity, rel), score in zip(self.files, scores):
            if identity not in best or score > best[identity][0]:
                best[identity] = (float(score), rel)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:top_k]
        return [Match(identity, score, rel) for identity, (score, rel) in ranked]
