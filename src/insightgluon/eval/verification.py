"""Face verification on pair sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

The accuracy follows the 2018 InsightFace protocol exactly: flip-summed,
L2-normalised embeddings; squared L2 distance of each pair (0..4); candidate
thresholds ``np.arange(0, 4, 0.01)``; ``nfolds`` contiguous folds; on each fold
the threshold is the first maximiser of the accuracy on the other folds and the
accuracy is measured on the held-out fold (a pair is "same" when
``dist < threshold``); the result is the mean and the (population) standard
deviation over the folds. On top of that, from the same distances: the best
threshold on all pairs (as distance and as cosine, ``cos = 1 - d / 2``), ROC,
AUC, EER, TAR at FAR 1e-1/1e-2/1e-3, and the out-of-fold accuracy on same and
different pairs.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.errors import DataFormatError

__all__ = ["THRESHOLDS", "FAR_TARGETS", "VerificationSet", "VerificationResult", "contiguous_folds",
           "pair_distances", "kfold_accuracy", "roc_curve", "equal_error_rate", "tar_at_far",
           "evaluate", "verify_model"]

#: Candidate distance thresholds of the legacy protocol (400 values).
THRESHOLDS = np.arange(0, 4, 0.01)
#: False-accept rates at which the true-accept rate is reported.
FAR_TARGETS = (1e-1, 1e-2, 1e-3)


@dataclass
class VerificationSet:
    """Decoded verification pairs: images ``2i`` and ``2i+1`` form pair ``i``.

    Attributes
    ----------
    name : str
        Target name (``lfw``), the file name without ``.bin``.
    images : np.ndarray
        ``(2P, H, W, 3)`` RGB uint8.
    issame : np.ndarray
        ``(P,)`` bool, True for a genuine pair.
    """

    name: str
    images: np.ndarray
    issame: np.ndarray

    def __post_init__(self):
        self.issame = np.asarray(self.issame, dtype=bool).reshape(-1)
        if self.images.ndim != 4 or self.images.shape[3] != 3:
            raise DataFormatError(f"{self.name}: images must be (N, H, W, 3), got {self.images.shape}")
        if len(self.images) != 2 * len(self.issame) or len(self.issame) == 0:
            raise DataFormatError(f"{self.name}: {len(self.images)} images for {len(self.issame)} "
                                  f"pairs (need exactly 2 per pair, at least one pair)")

    @classmethod
    def load(cls, path: str, image_size: Tuple[int, int] = (112, 112)) -> "VerificationSet":
        """Read and decode a legacy ``.bin`` pack (Python 2 or 3 pickle)."""
        from insightgluon.data.bin import decode_bin

        images, issame = decode_bin(path, image_size=tuple(image_size))
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            return cls(name, images, issame)
        except DataFormatError as err:
            raise DataFormatError(f"{path}: {str(err).split(': ', 1)[1]}") from None

    def __len__(self) -> int:
        return len(self.issame)


@dataclass
class VerificationResult:
    """Every verification metric of one model on one pair set.

    ``accuracy``/``std`` are the legacy "Accuracy-Flip" figures. ``threshold``
    is the squared-L2 distance maximising accuracy over all pairs and
    ``threshold_cos`` the same as cosine similarity. ``tar_at_far`` maps each
    FAR target to the TAR, or to None when there are fewer than ``1/FAR``
    different pairs. ``same_accuracy``/``diff_accuracy`` use the out-of-fold
    predictions that make up ``accuracy``. Array fields are excluded from
    :meth:`to_dict`.
    """

    accuracy: float
    std: float
    threshold: float
    threshold_cos: float
    auc: float
    eer: float
    tar_at_far: Dict[float, Optional[float]]
    same_accuracy: float
    diff_accuracy: float
    num_pairs: int
    num_same: int
    fold_accuracies: List[float]
    fold_thresholds: List[float]
    xnorm: float = float("nan")
    name: str = ""
    accuracy_noflip: Optional[float] = None
    std_noflip: Optional[float] = None
    distances: np.ndarray = field(default=None, repr=False)
    issame: np.ndarray = field(default=None, repr=False)
    predictions: np.ndarray = field(default=None, repr=False)
    roc_fpr: np.ndarray = field(default=None, repr=False)
    roc_tpr: np.ndarray = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-pair arrays)."""
        keys = ("name", "accuracy", "std", "accuracy_noflip", "std_noflip", "xnorm", "threshold",
                "threshold_cos", "auc", "eer", "same_accuracy", "diff_accuracy", "num_pairs",
                "num_same", "fold_accuracies", "fold_thresholds")
        out = {k: getattr(self, k) for k in keys}
        out["tar_at_far"] = {f"{far:g}": tar for far, tar in self.tar_at_far.items()}
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in out.items()}

    def legacy_lines(self, tag: str) -> List[str]:
        """The lines the 2018 code printed, e.g. ``[lfw]Accuracy-Flip: 0.99650+-0.00280``."""
        lines = [f"{tag}XNorm: {self.xnorm:f}"]
        if self.accuracy_noflip is not None:
            lines.append(f"{tag}Accuracy: {self.accuracy_noflip:1.5f}+-{self.std_noflip:1.5f}")
        lines.append(f"{tag}Accuracy-Flip: {self.accuracy:1.5f}+-{self.std:1.5f}")
        return lines

    def extra_lines(self, tag: str) -> List[str]:
        """Threshold, AUC/EER, TAR@FAR and per-class accuracy lines."""
        tars = " ".join(f"{far:.0e}={'n/a' if tar is None else f'{tar:1.5f}'}"
                        for far, tar in self.tar_at_far.items())
        return [f"{tag}Threshold: {self.threshold:.2f} (cosine {self.threshold_cos:.3f})",
                f"{tag}AUC: {self.auc:1.5f} EER: {self.eer:1.5f}",
                f"{tag}TAR@FAR: {tars}",
                f"{tag}Same-pair accuracy: {self.same_accuracy:1.5f} "
                f"Diff-pair accuracy: {self.diff_accuracy:1.5f}"]

    def worst_pairs(self, count: int = 8) -> Tuple[np.ndarray, np.ndarray]:
        """Pair indices of the worst false accepts (closest different pairs
        predicted "same") and false rejects (farthest same pairs predicted
        "different"), worst first."""
        wrong_accept = np.flatnonzero(self.predictions & ~self.issame)
        wrong_reject = np.flatnonzero(~self.predictions & self.issame)
        fa = wrong_accept[np.argsort(self.distances[wrong_accept], kind="stable")][:count]
        fr = wrong_reject[np.argsort(-self.distances[wrong_reject], kind="stable")][:count]
        return fa, fr


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance of rows ``2i`` and ``2i+1``: ``(2P, D) -> (P,)``."""
    emb = np.asarray(embeddings, dtype=np.float64)
    return np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)


def contiguous_folds(num: int, nfolds: int) -> List[np.ndarray]:
    """Test indices of ``nfolds`` consecutive folds; the first ``num % nfolds`` get one extra.

    The same split as ``sklearn.model_selection.KFold(nfolds, shuffle=False)``.
    """
    if not 2 <= nfolds <= num:
        raise ValueError(f"nfolds must be between 2 and the number of pairs ({num}), got {nfolds}")
    sizes = np.full(nfolds, num // nfolds)
    sizes[: num % nfolds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(nfolds)]


def kfold_accuracy(dist: np.ndarray, issame: np.ndarray, nfolds: int = 10,
                   thresholds: np.ndarray = THRESHOLDS):
    """Cross-validated accuracy of thresholding ``dist < t``.

    Returns
    -------
    fold_acc : np.ndarray
        ``(nfolds,)`` accuracy on each held-out fold.
    fold_thr : np.ndarray
        ``(nfolds,)`` threshold chosen on the other folds (first maximum).
    predictions : np.ndarray
        ``(P,)`` bool out-of-fold prediction of each pair ("same").
    """
    issame = np.asarray(issame, dtype=bool)
    # correct[t, i]: pair i is classified right with threshold t
    correct = (dist[None, :] < thresholds[:, None]) == issame[None, :]
    total = correct.sum(axis=1)
    fold_acc, fold_thr = [], []
    predictions = np.zeros(len(dist), dtype=bool)
    for test in contiguous_folds(len(dist), nfolds):
        # integer counts: the same argmax as the training-fold accuracy, without float ties
        best = int(np.argmax(total - correct[:, test].sum(axis=1)))
        fold_acc.append(correct[best, test].mean())
        fold_thr.append(float(thresholds[best]))
        predictions[test] = dist[test] < thresholds[best]
    return np.asarray(fold_acc), np.asarray(fold_thr), predictions


def roc_curve(dist: np.ndarray, issame: np.ndarray):
    """ROC of accepting pairs with ``dist <= t`` for every distinct distance ``t``.

    Returns ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold -inf.
    """
    order = np.argsort(dist, kind="stable")
    d, same = dist[order], np.asarray(issame, dtype=bool)[order]
    last = np.r_[np.flatnonzero(np.diff(d)), len(d) - 1]
    tp, fp = np.cumsum(same)[last], np.cumsum(~same)[last]
    npos, nneg = max(int(same.sum()), 1), max(int((~same).sum()), 1)
    return (np.r_[0.0, fp / nneg], np.r_[0.0, tp / npos], np.r_[-np.inf, d[last]])


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Rate where false accepts equal false rejects, linearly interpolated on the ROC."""
    gap = fpr - (1.0 - tpr)  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return float(fpr[0])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(dist: np.ndarray, issame: np.ndarray, far: float) -> Optional[float]:
    """True-accept rate at the loosest threshold whose false-accept rate is <= ``far``.

    Returns None when there are fewer than ``1 / far`` different pairs (the
    rate cannot be measured at that resolution).
    """
    issame = np.asarray(issame, dtype=bool)
    neg = np.sort(dist[~issame])
    allowed = int(np.floor(far * len(neg) + 1e-9))
    if allowed < 1 or not issame.any():
        return None
    # accept dist < neg[allowed]: at most `allowed` different pairs pass
    return float(np.mean(dist[issame] < neg[allowed])) if allowed < len(neg) else 1.0


def evaluate(embeddings: np.ndarray, issame: Sequence[bool], nfolds: int = 10,
             far_targets: Sequence[float] = FAR_TARGETS) -> VerificationResult:
    """Evaluate normalised pair embeddings.

    Parameters
    ----------
    embeddings : np.ndarray
        ``(2P, D)`` L2-normalised embeddings in pair order.
    issame : sequence of bool
        ``(P,)`` genuine-pair flags.
    nfolds : int
        Number of contiguous folds (legacy 10).

    Returns
    -------
    VerificationResult
        ``xnorm`` and ``name`` are left for the caller to fill.
    """
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != 2 * len(issame):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(issame)} pairs")
    dist = pair_distances(embeddings)
    fold_acc, fold_thr, pred = kfold_accuracy(dist, issame, nfolds)
    all_correct = ((dist[None, :] < THRESHOLDS[:, None]) == issame[None, :]).sum(axis=1)
    best = float(THRESHOLDS[int(np.argmax(all_correct))])
    fpr, tpr, _ = roc_curve(dist, issame)
    both = issame.any() and (~issame).any()
    return VerificationResult(
        accuracy=float(np.mean(fold_acc)), std=float(np.std(fold_acc)),
        threshold=best, threshold_cos=1.0 - best / 2.0,
        auc=float(np.trapz(tpr, fpr)) if both else float("nan"),
        eer=equal_error_rate(fpr, tpr) if both else float("nan"),
        tar_at_far={float(f): tar_at_far(dist, issame, f) for f in far_targets},
        same_accuracy=float(pred[issame].mean()) if issame.any() else float("nan"),
        diff_accuracy=float((~pred[~issame]).mean()) if (~issame).any() else float("nan"),
        num_pairs=len(issame), num_same=int(issame.sum()),
        fold_accuracies=[float(a) for a in fold_acc], fold_thresholds=[float(t) for t in fold_thr],
        distances=dist, issame=issame, predictions=pred, roc_fpr=fpr, roc_tpr=tpr)


def verify_model(model, vset: VerificationSet, ctx_list=None, batch_size: int = 64,
                 nfolds: int = 10, flip: bool = True) -> VerificationResult:
    """Embed ``vset`` once and compute every metric.

    The non-flip ``accuracy_noflip`` comes from the same forward pass (the
    originals' embeddings), so it costs no extra inference.
    """
    from insightgluon.eval.embed import Embedder

    embedder = Embedder(model, ctx_list, batch_size, flip)
    emb, xnorm, plain = embedder.embed(vset.images, progress=vset.name, keep_plain=True)
    result = evaluate(emb, vset.issame, nfolds)
    result.xnorm, result.name = xnorm, vset.name
    if flip:
        plain_acc, _, _ = kfold_accuracy(pair_distances(plain), vset.issame, nfolds)
        result.accuracy_noflip, result.std_noflip = float(np.mean(plain_acc)), float(np.std(plain_acc))
    return result
