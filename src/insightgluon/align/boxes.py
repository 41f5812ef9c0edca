"""Box arithmetic of the MTCNN cascade: NMS, regression, squaring and crops.

Boxes are float rows ``x1, y1, x2, y2, score`` in pixel coordinates of the
full image, with ``x2 - x1`` the width (continuous coordinates, no "+1").
"""
from typing import List

import cv2
import numpy as np


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression by descending score.

    Parameters
    ----------
    boxes : np.ndarray (N, 5)
    threshold : float
        A box is dropped when its overlap with a kept box exceeds this.
    mode : {"union", "min"}
        Overlap = intersection over union, or over the smaller area (the last
        cascade stage uses "min" to drop boxes nested in a bigger face).

    Returns
    -------
    np.ndarray int64 (K,)
        Indices of the kept boxes, best first.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-score, kind="stable")
    keep: List[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter_w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        inter_h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = inter_w * inter_h
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(area[best], area[rest]), 1e-12)
        else:
            overlap = inter / np.maximum(area[best] + area[rest] - inter, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression: each side moves by offset × box size.

    Parameters
    ----------
    boxes : np.ndarray (N, 5)
    offsets : np.ndarray (N, 4)
        ``dx1, dy1, dx2, dy2`` as fractions of width/height.
    """
    out = boxes.copy()
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    out[:, 0:2] += offsets[:, 0:2] * size
    out[:, 2:4] += offsets[:, 2:4] * size
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next stage takes square crops)."""
    out = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out[:, 0] = boxes[:, 0] + (width - side) / 2
    out[:, 1] = boxes[:, 1] + (height - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crop each box (zero outside the image), resize to ``size`` square.

    Parameters
    ----------
    image : np.ndarray (H, W, 3) float32
    boxes : np.ndarray (N, 4+)

    Returns
    -------
    np.ndarray float32 (N, size, size, 3)
    """
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    rounded = np.round(boxes[:, :4]).astype(np.int64)
    for i, (x1, y1, x2, y2) in enumerate(rounded):
        if x2 <= x1 or y2 <= y1:
            continue
        patch = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.float32)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``(4+,)`` with each of ``boxes (N, 4+)``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, boxes.shape[-1] if len(boxes) else 4)
    inter_w = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    inter_h = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)
