"""IJB-B / IJB-C 1:1 template verification, computed as InsightFace computes it.

The steps are those of InsightFace's ``ijb_11.py`` and arcface_torch's ``eval_ijbc.py``:

1. Image features: the network's embedding of the aligned crop plus that of its mirror (``flip``),
   optionally L2-normalised per image (``normalise``), optionally times the detector's score
   (``detector_score``). The defaults (flip on, no normalisation, score on) are InsightFace's.
2. Template features: for each template, each of its media contributes the mean of its images'
   features (an image alone contributes itself); the template is the sum over its media, then
   L2-normalised.
3. Pair score: the dot product of the two template features.
4. TAR at each FAR: sklearn's ``roc_curve`` (intermediate points dropped, its default), both
   arrays reversed, and the TPR at the FPR nearest the target; among equally near FPRs the first
   of the reversed arrays wins (``min`` over ``(|fpr - target|, index)``).

Pairs are scored in chunks, so IJB-C's 15.7 million pairs never hold more than a chunk of
gathered template rows at once. The meta-file readers name the file and line of any bad row.
"""
import os
from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np

from insightgluon.errors import DataFormatError

#: The FARs InsightFace reports.
FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class ImageMeta(NamedTuple):
    """Per image, in meta order: file name, template id, media id, five landmarks and detector score."""

    names: List[str]
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray


def _rows(path: str, columns: int, what: str) -> Iterable[Tuple[int, List[str]]]:
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such IJB meta file")
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise DataFormatError(f"{path}: line {number}: {len(fields)} columns, expected {columns} ({what})")
            yield number, fields


def _numbers(path: str, number: int, fields: Sequence[str], kind=int) -> list:
    try:
        return [kind(v) for v in fields]
    except ValueError:
        raise DataFormatError(f"{path}: line {number}: not a number in {' '.join(fields)!r}") from None


def read_image_meta(face_tid_mid: str, name_5pts_score: str) -> ImageMeta:
    """``*_face_tid_mid.txt`` (``name tid mid``) and ``*_name_5pts_score.txt`` (``name x1 y1 ... x5 y5
    score``), which must list the same images in the same order."""
    names, ids = [], []
    for number, fields in _rows(face_tid_mid, 3, "name tid mid"):
        names.append(fields[0])
        ids.append(_numbers(face_tid_mid, number, fields[1:]))
    points, scores = [], []
    for k, (number, fields) in enumerate(_rows(name_5pts_score, 12, "name, 5 points, score")):
        if k >= len(names) or fields[0] != names[k]:
            expected = names[k] if k < len(names) else "no more images"
            raise DataFormatError(f"{name_5pts_score}: line {number}: image {fields[0]}, expected {expected} "
                                  f"(the order of {os.path.basename(face_tid_mid)})")
        values = _numbers(name_5pts_score, number, fields[1:], float)
        points.append(values[:10])
        scores.append(values[10])
    if len(points) != len(names):
        raise DataFormatError(f"{name_5pts_score}: {len(points)} images, {face_tid_mid} lists {len(names)}")
    if not names:
        raise DataFormatError(f"{face_tid_mid}: no images")
    ids_array = np.asarray(ids, dtype=np.int64).reshape(-1, 2)
    return ImageMeta(names, ids_array[:, 0], ids_array[:, 1],
                     np.asarray(points, dtype=np.float32).reshape(-1, 5, 2), np.asarray(scores, dtype=np.float32))


def read_template_pairs(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``*_template_pair_label.txt``: ``(t1, t2, label)`` arrays (label 1 for a genuine pair)."""
    rows = [_numbers(path, number, fields) for number, fields in _rows(path, 3, "tid1 tid2 label")]
    if not rows:
        raise DataFormatError(f"{path}: no pairs")
    pairs = np.asarray(rows, dtype=np.int64)
    return pairs[:, 0], pairs[:, 1], pairs[:, 2]


def image_features(raw: np.ndarray, detector_scores: np.ndarray, flip: bool = True, normalise: bool = False,
                   detector_score: bool = True) -> np.ndarray:
    """Step 1. ``raw`` is ``(N, 2D)``: each row the crop's embedding then its mirror's."""
    raw = np.asarray(raw, dtype=np.float32)
    half = raw.shape[1] // 2
    feats = raw[:, :half] + raw[:, half:] if flip else raw[:, :half].copy()
    if normalise:
        feats /= np.sqrt(np.sum(feats ** 2, -1, keepdims=True))
    if detector_score:
        feats *= np.asarray(detector_scores, dtype=np.float32)[:, None]
    return feats


def template_features(feats: np.ndarray, templates: np.ndarray, medias: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Step 2: ``(template ids sorted, (T, D) L2-normalised template features)``."""
    templates, medias = np.asarray(templates), np.asarray(medias)
    order = np.lexsort((medias, templates))  # group images by (template, media)
    t_sorted, m_sorted, f_sorted = templates[order], medias[order], np.asarray(feats)[order]
    starts = np.r_[0, np.flatnonzero((np.diff(t_sorted) != 0) | (np.diff(m_sorted) != 0)) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    media_means = np.add.reduceat(f_sorted, starts, axis=0) / counts[:, None].astype(f_sorted.dtype)
    media_templates = t_sorted[starts]
    ids, first = np.unique(media_templates, return_index=True)
    summed = np.add.reduceat(media_means, first, axis=0)
    norms = np.sqrt(np.sum(summed.astype(np.float64) ** 2, axis=1, keepdims=True))
    return ids, (summed / np.maximum(norms, 1e-12)).astype(np.float32)


def pair_scores(ids: np.ndarray, template_feats: np.ndarray, t1: np.ndarray, t2: np.ndarray,
                chunk: int = 100_000, source: str = "pairs") -> np.ndarray:
    """Step 3, in chunks of ``chunk`` pairs; a pair naming a template without images is refused."""
    rows1, rows2 = np.searchsorted(ids, t1), np.searchsorted(ids, t2)
    for t, rows in ((t1, rows1), (t2, rows2)):
        bad = (rows >= len(ids)) | (ids[np.minimum(rows, len(ids) - 1)] != t)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{source}: line {k + 1}: template {int(t[k])} has no images")
    out = np.empty(len(t1), dtype=np.float32)
    for begin in range(0, len(t1), chunk):
        end = min(begin + chunk, len(t1))
        out[begin:end] = np.einsum("ij,ij->i", template_feats[rows1[begin:end]], template_feats[rows2[begin:end]])
    return out


def tar_at_far(labels: np.ndarray, scores: np.ndarray, targets: Sequence[float] = FAR_TARGETS
               ) -> Dict[float, float]:
    """Step 4: ``{far: tar}`` by InsightFace's nearest-FPR rule (no interpolation)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores))
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for target in targets:
        gaps = np.abs(fpr - target)
        out[target] = float(tpr[int(np.flatnonzero(gaps == gaps.min())[0])])
    return out


def tar_lines(tars: Dict[float, float]) -> List[str]:
    """``TAR@FAR=1e-04: 96.28`` per FAR, in percent with two decimals as InsightFace prints them."""
    return [f"TAR@FAR={far:.0e}: {100 * tar:.2f}" for far, tar in sorted(tars.items())]
