"""Verification figures: ROC curves and a gallery of the worst mistakes (PNG).

Uses Matplotlib's object API with the Agg canvas, so no display and no global
backend switch are needed.
"""
import os
import tempfile
from typing import Sequence, Tuple

import numpy as np

__all__ = ["save_ijb_roc", "save_roc", "save_worst_pairs"]


def _save(fig, path: str) -> str:
    """Write ``fig`` as PNG atomically (temp file + rename)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def save_roc(curves: Sequence[Tuple[str, "VerificationResult"]], path: str, title: str = "") -> str:
    """Plot TAR against FAR (log scale) for one or more results.

    Parameters
    ----------
    curves : sequence of (label, VerificationResult)
    path : str
        Output ``.png``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot(1, 1, 1)
    for label, res in curves:
        nneg = max(res.num_pairs - res.num_same, 1)
        keep = res.roc_fpr > 0  # log axis: start at one false accept
        ax.step(np.r_[1.0 / nneg, res.roc_fpr[keep]], np.r_[res.roc_tpr[~keep].max(), res.roc_tpr[keep]],
                where="post", label=f"{label} (AUC {res.auc:.4f}, EER {res.eer:.4f})")
    ax.set_xscale("log")
    ax.set_xlim(left=min(1e-3, ax.get_xlim()[0]), right=1.0)
    ax.set_ylim(0.0, 1.005)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def save_worst_pairs(result, images: np.ndarray, path: str, count: int = 8) -> str:
    """Show the worst false accepts (top rows) and false rejects (bottom rows).

    Parameters
    ----------
    result : VerificationResult
        With per-pair ``distances`` and out-of-fold ``predictions``.
    images : np.ndarray
        ``(2P, H, W, 3)`` uint8, the pair images in order.
    path : str
        Output ``.png``.
    count : int
        Pairs per kind.
    """
    from matplotlib.figure import Figure

    fa, fr = result.worst_pairs(count)
    cols = max(len(fa), len(fr), 1)
    fig = Figure(figsize=(1.6 * cols, 6.8))
    fig.suptitle(f"{result.name}: worst false accepts (top) and false rejects (bottom); "
                 f"threshold {result.threshold:.2f}", fontsize=9)
    for row, (kind, pairs) in enumerate((("FA", fa), ("FR", fr))):
        for col in range(cols):
            for k in range(2):
                ax = fig.add_subplot(4, cols, (2 * row + k) * cols + col + 1)
                ax.axis("off")
                if col < len(pairs):
                    ax.imshow(images[2 * pairs[col] + k])
                    if k == 0:
                        ax.set_title(f"{kind} #{pairs[col]}\nd={result.distances[pairs[col]]:.3f}",
                                     fontsize=7)
        if not len(pairs):
            fig.text(0.5, 0.72 - 0.45 * row, f"no {'false accepts' if row == 0 else 'false rejects'}",
                     ha="center", fontsize=9)
    return _save(fig, path)


def save_ijb_roc(labels: np.ndarray, scores: np.ndarray, path: str, title: str = "") -> str:
    """IJB 1:1 ROC: TAR against FAR from 1e-6 to 1 (log scale), with the reported FARs marked."""
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    from insightgluon.eval.ijb import FAR_TARGETS, tar_at_far

    fpr, tpr, _ = roc_curve(labels, scores)
    keep = fpr > 0
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(fpr[keep], tpr[keep], lw=1.2)
    tars = tar_at_far(labels, scores)
    ax.scatter(list(tars), list(tars.values()), s=12, color="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(min(FAR_TARGETS), 1.0)
    ax.set_ylim(max(0.0, min(tars.values()) - 0.05), 1.0)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="both", linestyle=":", linewidth=0.5)
    ax.set_title(title or "IJB 1:1 verification")
    return _save(fig, path)
