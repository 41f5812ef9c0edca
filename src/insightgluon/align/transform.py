"""Five-point similarity alignment to the ArcFace templates, and the crop fallbacks.

The 2018 pipeline warps every face so that its eyes, nose tip and mouth corners
land on fixed template points (``common/face_preprocess.py``). The template for
a 112x96 crop comes from SphereFace; the 112x112 template shifts it 8 px right.
The transform is a similarity (rotation, uniform scale, translation) fitted by
least squares (Umeyama, 1991, "Least-squares estimation of transformation
parameters between two point patterns").
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from insightgluon.errors import ConfigError

# Left eye, right eye, nose tip, left mouth corner, right mouth corner (image
# coordinates: "left" is the smaller x) for a crop 112 high and 96 wide.
REFERENCE_96 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
     [33.5493, 92.3655], [62.7299, 92.2041]], dtype=np.float64)
REFERENCE_96.flags.writeable = False
# The same points for a 112x112 crop: the extra 16 px of width are split evenly.
REFERENCE_112 = REFERENCE_96 + np.array([8.0, 0.0])
REFERENCE_112.flags.writeable = False

# Legacy margin (pixels, split over both sides) of the bounding-box crop.
BBOX_MARGIN = 44
# Legacy inset of the centre crop used when there is neither a box nor landmarks.
CENTER_INSET = 0.0625


def reference_landmarks(image_size: Sequence[int] = (112, 112)) -> np.ndarray:
    """Template points for a crop of ``image_size = (height, width)``.

    ``(112, 96)`` and ``(112, 112)`` are the legacy templates; other square sizes
    scale the 112x112 template (e.g. 224x224 for large models).

    Returns
    -------
    np.ndarray, float64 (5, 2)
        ``(x, y)`` per point.
    """
    height, width = (int(v) for v in image_size)
    if (height, width) == (112, 96):
        return REFERENCE_96.copy()
    if height == width and height > 0:
        return REFERENCE_112 * (height / 112.0)
    raise ConfigError(
        f"image size {height}x{width} has no alignment template; use 112x112, 112x96 or a square size")


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst``.

    Parameters
    ----------
    src, dst : array-like (K, 2)
        Corresponding ``(x, y)`` points, K >= 2.

    Returns
    -------
    np.ndarray, float64 (2, 3)
        ``M`` with ``dst ≈ M[:, :2] @ p + M[:, 2]`` for each source point ``p``;
        the matrix ``cv2.warpAffine`` takes.

    Raises
    ------
    ValueError
        If the points are not finite or the source points all coincide.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinite values")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("landmarks are degenerate (all points coincide)")
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    # Force a proper rotation: a reflection would mirror the face.
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def align_face(rgb: np.ndarray, landmarks: np.ndarray,
               image_size: Sequence[int] = (112, 112)) -> np.ndarray:
    """Warp a face so its five landmarks land on the template.

    Parameters
    ----------
    rgb : np.ndarray uint8 (H, W, 3)
        The photo (any channel order; it is preserved).
    landmarks : array-like (5, 2)
        ``(x, y)`` of left eye, right eye, nose, left and right mouth corners.
    image_size : (height, width)
        Output size, ``(112, 112)`` by default.

    Returns
    -------
    np.ndarray uint8 (height, width, 3)
        Aligned crop; pixels from outside the photo are black (legacy).
    """
    height, width = (int(v) for v in image_size)
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if landmarks.shape != (5, 2):
        raise ValueError(f"need 5 landmarks, got {landmarks.shape[0]}")
    matrix = estimate_similarity(landmarks, reference_landmarks((height, width)))
    return cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)


def center_box(shape: Tuple[int, ...]) -> np.ndarray:
    """The legacy no-detection box: the image inset by 6.25% on each side, (x1, y1, x2, y2)."""
    height, width = shape[:2]
    dx, dy = int(width * CENTER_INSET), int(height * CENTER_INSET)
    return np.array([dx, dy, width - dx, height - dy], dtype=np.float64)


def crop_bbox(rgb: np.ndarray, box: Optional[np.ndarray] = None, margin: int = BBOX_MARGIN,
              image_size: Sequence[int] = (112, 112)) -> np.ndarray:
    """Crop a box widened by ``margin`` pixels (half on each side) and resize it.

    Used when no landmarks are available. With ``box=None`` the legacy centre
    box (:func:`center_box`) is used.

    Parameters
    ----------
    rgb : np.ndarray uint8 (H, W, 3)
    box : array-like (4,) or (5,), optional
        ``x1, y1, x2, y2[, score]`` in pixels.
    margin : int
        Total extra pixels per axis; the legacy value is 44.
    image_size : (height, width)

    Returns
    -------
    np.ndarray uint8 (height, width, 3)
    """
    height, width = rgb.shape[:2]
    box = center_box(rgb.shape) if box is None else np.asarray(box, dtype=np.float64)[:4]
    if not np.isfinite(box).all():
        raise ValueError("bounding box contains NaN or infinite values")
    x1 = int(max(np.floor(box[0] - margin / 2), 0))
    y1 = int(max(np.floor(box[1] - margin / 2), 0))
    x2 = int(min(np.ceil(box[2] + margin / 2), width))
    y2 = int(min(np.ceil(box[3] + margin / 2), height))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"bounding box {box.tolist()} lies outside the {width}x{height} image")
    out_h, out_w = (int(v) for v in image_size)
    return cv2.resize(rgb[y1:y2, x1:x2], (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def select_face(boxes: np.ndarray, shape: Tuple[int, ...]) -> int:
    """Index of the face to keep when several are found (legacy rule).

    Maximises ``box_area - 2 * |box_centre - image_centre|^2``: large faces
    near the centre win over small or peripheral ones.

    Parameters
    ----------
    boxes : np.ndarray (N, 4+)
        ``x1, y1, x2, y2, ...`` rows, N >= 1.
    shape : tuple
        The image shape ``(H, W, ...)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or len(boxes) == 0:
        raise ValueError("select_face needs at least one box")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre = np.array([shape[1] / 2.0, shape[0] / 2.0])
    offset = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0 - centre
    return int(np.argmax(area - 2.0 * (offset ** 2).sum(axis=1)))
