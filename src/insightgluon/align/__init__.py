"""Face detection (MTCNN) and five-point alignment to the ArcFace crop.

``MTCNN`` loads MXNet on first use; the transform functions need only NumPy and
OpenCV, so data-loader workers can import them cheaply.
"""
from insightgluon.align.transform import (REFERENCE_96, REFERENCE_112, align_face, crop_bbox,
                                          estimate_similarity, reference_landmarks, select_face)

__all__ = ["MTCNN", "PRESETS", "REFERENCE_96", "REFERENCE_112", "align_face", "crop_bbox",
           "estimate_similarity", "reference_landmarks", "select_face"]


def __getattr__(name):
    if name in ("MTCNN", "PRESETS"):
        from insightgluon.align import mtcnn

        return getattr(mtcnn, name)
    raise AttributeError(f"module 'insightgluon.align' has no attribute '{name}'")
