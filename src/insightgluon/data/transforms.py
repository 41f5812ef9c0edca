"""Training-time augmentation with the 2018 ``FaceImageIter`` semantics (REFERENCE §2.3).

NumPy/OpenCV only: it runs inside DataLoader worker processes, where MXNet
operators would fight the main process for OpenMP threads.
"""
import cv2
import numpy as np

# ITU-R BT.601 luma weights, as in mx.image.ContrastJitterAug / SaturationJitterAug.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_JITTER = 0.125  # ColorJitterAug(0.125, 0.125, 0.125)


def _brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img * np.float32(1.0 + rng.uniform(-_JITTER, _JITTER))


def _contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    alpha = np.float32(1.0 + rng.uniform(-_JITTER, _JITTER))
    mean_luma = float((img * _LUMA).sum()) / (img.shape[0] * img.shape[1])
    return img * alpha + np.float32((1.0 - alpha) * mean_luma)


def _saturation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    alpha = np.float32(1.0 + rng.uniform(-_JITTER, _JITTER))
    luma = (img * _LUMA).sum(axis=2, keepdims=True)
    return img * alpha + luma * (1.0 - alpha)


_COLOR_OPS = (_brightness, _contrast, _saturation)


class FaceAugment:
    """Mirror, colour jitter, JPEG re-compression and cutoff, in the legacy order.

    Parameters
    ----------
    rand_mirror : bool
        With p=0.5 flip left-right (``--rand-mirror``).
    cutoff : int
        With p=0.5 set a ``cutoff``-sided square around a random centre to 128 (``--cutoff``).
    color : int
        ``>0``: brightness, contrast and saturation jitter of ±0.125 in random order;
        ``>1``: before that, with p=0.5, re-encode as JPEG at quality ``randint(2, 20)`` (``--color``).

    Notes
    -----
    The legacy iterator kept the jittered image as unclipped float32; this
    returns uint8, rounded and clipped to 0..255, so it can be batched like the
    decoded images. Call as ``aug(rgb, rng)`` with ``rgb`` ``(H, W, 3)`` uint8
    and ``rng`` a ``np.random.Generator``; returns ``(H, W, 3)`` uint8.
    """

    def __init__(self, rand_mirror: bool = True, cutoff: int = 0, color: int = 0):
        self.rand_mirror = bool(rand_mirror)
        self.cutoff = int(cutoff)
        self.color = int(color)
        if self.cutoff < 0 or self.color < 0:
            raise ValueError(f"cutoff and color must be >= 0, got cutoff={cutoff}, color={color}")

    @property
    def active(self) -> bool:
        """False when every augmentation is off (the caller may skip the call)."""
        return self.rand_mirror or self.cutoff > 0 or self.color > 0

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = rgb
        if self.rand_mirror and rng.integers(2):
            img = img[:, ::-1]
        if self.color > 1 and rng.integers(2):
            img = _recompress(img, int(rng.integers(2, 21)))
        if self.color > 0:
            out = img.astype(np.float32)
            for i in rng.permutation(len(_COLOR_OPS)):
                out = _COLOR_OPS[i](out, rng)
            img = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if self.cutoff > 0 and rng.integers(2):
            img = np.array(img)  # never write into the caller's array
            h, w = img.shape[:2]
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            half = self.cutoff // 2
            img[max(0, cy - half):min(h, cy + half), max(0, cx - half):min(w, cx + half)] = 128
        return np.ascontiguousarray(img)

    def __repr__(self) -> str:
        return f"FaceAugment(rand_mirror={self.rand_mirror}, cutoff={self.cutoff}, color={self.color})"


def _recompress(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb), [cv2.IMWRITE_JPEG_QUALITY, quality])
    # channel order does not matter for a round trip through the same codec
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else rgb
