"""MTCNN face detector (P-Net -> R-Net -> O-Net cascade) on MXNet Gluon.

Stage 1 slides P-Net over an image pyramid and keeps windows whose face
probability passes ``thresholds[0]``; stages 2 and 3 re-score square crops of
the survivors at 24x24 and 48x48, regress their boxes, and O-Net adds five
landmarks. Several images are detected together: pyramid levels of images of
the same size share one P-Net batch, and all candidate crops of a batch share
the R-Net and O-Net passes. The three networks run in MXNet or, compiled from the same
weights, in OpenVINO (:mod:`.mtcnn_openvino`; ``engine``).
"""
import math
from typing import Dict, List, Sequence, Tuple

import cv2
import mxnet as mx
import numpy as np

from insightgluon.align import boxes as bx
from insightgluon.align.mtcnn_nets import load_networks
from insightgluon.errors import ConfigError

#: What can run the three networks (``MTCNN(engine=...)``); ``auto`` is OpenVINO where it imports.
ENGINES = ("auto", "mxnet", "openvino")


def detector_engine(engine: str) -> str:
    """``mxnet`` or ``openvino`` for ``engine`` (``auto``: OpenVINO where it can be imported)."""
    if engine not in ENGINES:
        raise ConfigError(f"MTCNN engine '{engine}': choose one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "mxnet"
    return "openvino"

# Detector settings of the legacy scripts (REFERENCE §6).
PRESETS: Dict[str, dict] = {
    # align_lfw.py (also the default for photo folders and landmark-free data)
    "lfw": dict(min_size=20, thresholds=(0.6, 0.7, 0.9), factor=0.85),
    # align_megaface.py / align_facescrub.py
    "megaface": dict(min_size=100, thresholds=(0.6, 0.7, 0.7), factor=0.709),
    # deploy/face_model.py
    "deploy": dict(min_size=50, thresholds=(0.6, 0.7, 0.8), factor=0.709),
}

_CELL = 12  # P-Net's receptive field, pixels
_STRIDE = 2  # P-Net's output stride, pixels
_BATCH = 256  # crops per R-Net / O-Net forward


def _normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in about [-1, 1], the input range the weights were trained on.

    RGB in image (not transposed) orientation: on the astronaut photo this scores
    the face higher than BGR, and a transposed image gives scrambled landmarks.
    """
    return (rgb.astype(np.float32) - 127.5) * 0.0078125


class MTCNN:
    """Detect faces and their five landmarks.

    Parameters
    ----------
    ctx : mx.Context, optional
        Device for the three networks (CPU by default).
    min_size : float
        Smallest face side, in pixels, that the pyramid searches for.
    thresholds : (float, float, float)
        Face-probability thresholds of P-Net, R-Net and O-Net.
    factor : float
        Scale step between pyramid levels, in (0, 1).
    nms_thresholds : (float, float, float, float)
        Overlap limits: within one pyramid level, across levels, after R-Net,
        after O-Net (the last measured over the smaller box).
    engine : {"mxnet", "openvino", "auto"}
        What runs the networks: MXNet on ``ctx``, or OpenVINO on the CPU in float32
        (the same weights and boxes; faster here, see docs/BENCHMARKS.md "Alignment");
        ``auto``: OpenVINO where it can be imported and ``ctx`` is the CPU.

    Examples
    --------
    >>> det = MTCNN()
    >>> boxes, points = det.detect(rgb)   # (N, 5) x1 y1 x2 y2 score, (N, 5, 2)
    """

    def __init__(self, ctx=None, min_size: float = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.9),
                 factor: float = 0.85, nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
                 engine: str = "mxnet"):
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"MTCNN factor must be in (0, 1), got {factor}")
        if min_size < _CELL:
            raise ConfigError(f"MTCNN min_size must be at least {_CELL} pixels, got {min_size}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f"MTCNN thresholds must be three probabilities, got {tuple(thresholds)}")
        self.ctx = ctx or mx.cpu()
        self.min_size = float(min_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        engine = detector_engine("mxnet" if engine == "auto" and self.ctx.device_type != "cpu" else engine)
        if engine == "openvino" and self.ctx.device_type != "cpu":
            raise ConfigError(f"MTCNN engine openvino runs on the CPU, not {self.ctx}")
        self.engine = engine
        self.pnet, self.rnet, self.onet = load_networks(self.ctx)
        if engine == "openvino":
            from insightgluon.align.mtcnn_openvino import openvino_stages
            from insightgluon.runtime import host_threads

            self._stages = openvino_stages((self.pnet, self.rnet, self.onet), host_threads())
        else:
            from insightgluon.align.mtcnn_openvino import mxnet_stages

            self._stages = mxnet_stages((self.pnet, self.rnet, self.onet), self.ctx)

    @classmethod
    def from_preset(cls, name: str, ctx=None, **overrides) -> "MTCNN":
        """A detector with the settings of a legacy script: ``lfw``, ``megaface`` or ``deploy``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown MTCNN preset '{name}'; choose one of: {', '.join(PRESETS)}")
        return cls(ctx=ctx, **{**PRESETS[name], **overrides})

    def scales(self, height: int, width: int) -> List[float]:
        """Pyramid scales: the first maps ``min_size`` to 12 px, each next is ``factor`` smaller."""
        scale = _CELL / self.min_size
        side = min(height, width) * scale
        out = []
        while side >= _CELL:
            out.append(scale)
            scale *= self.factor
            side *= self.factor
        return out

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Faces in one RGB image.

        Parameters
        ----------
        rgb : np.ndarray uint8 (H, W, 3), RGB order

        Returns
        -------
        boxes : np.ndarray float32 (N, 5)
            ``x1, y1, x2, y2, score`` per face, best score first.
        landmarks : np.ndarray float32 (N, 5, 2)
            ``(x, y)`` of left eye, right eye, nose, left and right mouth corners.
        """
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> List[Tuple[np.ndarray, np.ndarray]]:
        """:meth:`detect` for several images at once (faster for equal-sized images)."""
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
        floats = [_normalise(img) for img in images]
        candidates = self._stage_proposals(floats)
        candidates = self._stage_refine(floats, candidates)
        return self._stage_output(floats, candidates)

    def _forward(self, stage: int, batch: np.ndarray):
        """Outputs of network ``stage`` (0 P-Net, 1 R-Net, 2 O-Net) on an NHWC batch, as NumPy."""
        return self._stages[stage](batch.transpose(0, 3, 1, 2))

    def _stage_proposals(self, floats: List[np.ndarray]) -> List[np.ndarray]:
        """P-Net over each pyramid level; images of the same shape share a batch."""
        by_shape: Dict[tuple, List[int]] = {}
        for i, img in enumerate(floats):
            by_shape.setdefault(img.shape[:2], []).append(i)
        found: List[List[np.ndarray]] = [[] for _ in floats]
        for (height, width), members in by_shape.items():
            for scale in self.scales(height, width):
                size = (int(math.ceil(width * scale)), int(math.ceil(height * scale)))
                batch = np.stack([cv2.resize(floats[i], size, interpolation=cv2.INTER_AREA)
                                  for i in members])
                prob, reg = self._forward(0, batch)
                for k, i in enumerate(members):
                    level = self._windows(prob[k, 1], reg[k], scale)
                    found[i].append(level[bx.nms(level, self.nms_thresholds[0])])
        out = []
        for level_boxes in found:
            cand = np.concatenate(level_boxes) if level_boxes else np.zeros((0, 9), np.float32)
            cand = cand[bx.nms(cand, self.nms_thresholds[1])]
            out.append(bx.square(bx.regress(cand[:, :5], cand[:, 5:9])))
        return out

    def _windows(self, prob: np.ndarray, reg: np.ndarray, scale: float) -> np.ndarray:
        """Image-space windows (x1, y1, x2, y2, score, dx1, dy1, dx2, dy2) passing threshold 1."""
        rows, cols = np.nonzero(prob >= self.thresholds[0])
        out = np.empty((len(rows), 9), dtype=np.float32)
        out[:, 0] = cols * _STRIDE / scale
        out[:, 1] = rows * _STRIDE / scale
        out[:, 2] = (cols * _STRIDE + _CELL) / scale
        out[:, 3] = (rows * _STRIDE + _CELL) / scale
        out[:, 4] = prob[rows, cols]
        out[:, 5:9] = reg[:, rows, cols].T
        return out

    def _score_crops(self, stage: int, floats, candidates, size):
        """Run network ``stage`` on every candidate crop of every image; outputs split per image."""
        crops = [bx.crop_patches(img, cand, size) for img, cand in zip(floats, candidates)]
        counts = [len(c) for c in crops]
        if sum(counts) == 0:
            return None
        batch = np.concatenate(crops)
        outputs = [self._forward(stage, batch[i:i + _BATCH]) for i in range(0, len(batch), _BATCH)]
        merged = [np.concatenate(parts) for parts in zip(*outputs)]
        bounds = np.cumsum([0] + counts)
        return [[m[bounds[i]:bounds[i + 1]] for m in merged] for i in range(len(counts))]

    def _stage_refine(self, floats, candidates):
        """R-Net re-scores 24x24 crops, regresses and squares the survivors."""
        scored = self._score_crops(1, floats, candidates, 24)
        if scored is None:
            return candidates
        out = []
        for cand, (prob, reg) in zip(candidates, scored):
            keep = prob[:, 1] >= self.thresholds[1]
            cand, reg = cand[keep].copy(), reg[keep]
            cand[:, 4] = prob[keep, 1]
            order = bx.nms(cand, self.nms_thresholds[2])
            out.append(bx.square(bx.regress(cand[order], reg[order])))
        return out

    def _stage_output(self, floats, candidates):
        """O-Net re-scores 48x48 crops and predicts landmarks; final NMS over the smaller box."""
        empty = (np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))
        scored = self._score_crops(2, floats, candidates, 48)
        if scored is None:
            return [empty for _ in candidates]
        out = []
        for cand, (prob, reg, points) in zip(candidates, scored):
            keep = prob[:, 1] >= self.thresholds[2]
            cand, reg, points = cand[keep].copy(), reg[keep], points[keep]
            cand[:, 4] = prob[keep, 1]
            size = np.stack([cand[:, 2] - cand[:, 0], cand[:, 3] - cand[:, 1]], axis=1)
            marks = np.stack([points[:, 0:5], points[:, 5:10]], axis=2) * size[:, None, :]
            marks += cand[:, None, 0:2]
            cand = bx.regress(cand, reg)
            order = bx.nms(cand, self.nms_thresholds[3], mode="min")
            out.append((cand[order].astype(np.float32), marks[order].astype(np.float32)))
        return out
