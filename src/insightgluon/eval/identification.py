"""Identification (CMC) and verification (TAR@FAR) against large distractor sets.

**MegaFace challenge 1 protocol** (FaceScrub probes): for every identity with
images ``x_1..x_n``, each ``x_i`` in turn joins the distractor gallery and every
other ``x_j`` of the identity is a probe; the rank of that probe is
``1 + #{distractors scoring higher than x_i}``. Rank-k accuracy (the CMC) is
the fraction of the ``n(n-1)`` (gallery, probe) pairs with rank <= k, per
identity summed over identities. Verification: genuine pairs are the pairs of
images of one identity, impostor pairs every (probe, distractor) pair; the TAR
is measured at the loosest threshold with at most ``FAR x #impostors`` false
accepts. Scores are negative squared L2 distances, which equals cosine
ranking for unit features and keeps the 100.0-filled noisy distractors of the
513-dim cleaned features out of reach.

**Streaming.** Distractors are visited once, in chunks of ``chunk_size``
rows: each probe keeps only its ``max_rank`` best distractor scores and the
run keeps the ``FAR x #impostors + 1`` best impostor scores overall, so memory
is the distractor matrix (float16 allowed: each score then deviates by at
most ``4 * 2**-11 ~= 2e-3`` in squared distance for unit vectors) plus
``probes x chunk_size`` floats. Several distractor counts (10 ... 1M) are the
nested prefixes of the distractor order and come out of the same pass.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from insightgluon.errors import ConfigError

__all__ = ["DEFAULT_SIZES", "IdentificationResult", "megaface_identification", "identify_1n",
           "same_identity_pairs"]

DEFAULT_SIZES = (10, 100, 1000, 10000, 100000, 1000000)


@dataclass
class IdentificationResult:
    """CMC and TAR@FAR per gallery (distractor) size.

    ``cmc[size][k-1]`` is the rank-k identification rate; ``tar[size]`` is the
    TAR at ``far`` or None when there are too few impostor pairs.
    """

    sizes: List[int]
    cmc: Dict[int, np.ndarray]
    tar: Dict[int, Optional[float]]
    far: float
    num_probes: int
    num_pairs: int

    def rank(self, k: int, size: Optional[int] = None) -> float:
        return float(self.cmc[size or self.sizes[-1]][k - 1])

    def to_dict(self) -> dict:
        return {"far": self.far, "num_probes": self.num_probes, "num_pairs": self.num_pairs,
                "results": [{"distractors": s, "cmc": [float(v) for v in self.cmc[s]],
                             "rank1": float(self.cmc[s][0]), "tar_at_far": self.tar[s]} for s in self.sizes]}

    def lines(self) -> List[str]:
        out = []
        for s in self.sizes:
            tar = "n/a" if self.tar[s] is None else f"{self.tar[s]:.5f}"
            ranks = " ".join(f"rank{k}={v:.5f}" for k, v in enumerate(self.cmc[s], 1) if k in (1, 5, 10))
            out.append(f"distractors {s:>8d}: {ranks} TAR@FAR={self.far:g}: {tar}")
        return out


class _TopImpostors:
    """The ``capacity`` highest scores seen so far (float32), for a global FAR threshold."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.best = np.empty(0, dtype=np.float32)
        self.floor = -np.inf

    def add(self, scores: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        cand = scores[scores > self.floor] if np.isfinite(self.floor) else scores.reshape(-1)
        if not cand.size:
            return
        merged = np.concatenate([self.best, cand.astype(np.float32, copy=False)])
        if len(merged) > self.capacity:
            merged = np.partition(merged, len(merged) - self.capacity)[-self.capacity:]
            self.floor = float(merged.min())
        self.best = merged

    def threshold(self, allowed: int) -> float:
        """Score that exactly ``allowed`` or fewer impostors exceed: the (allowed+1)-th best."""
        top = np.sort(self.best)[::-1]
        return float(top[allowed]) if allowed < len(top) else -np.inf


def _neg_sq_dist(probes: np.ndarray, probe_sq: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """``-||p - d||^2`` for all probe/distractor rows: ``(P, D), (P,), (C, D) -> (P, C)``."""
    chunk = np.asarray(chunk, dtype=np.float32)
    scores = probes @ chunk.T
    scores *= 2.0
    scores -= probe_sq[:, None]
    scores -= np.einsum("ij,ij->i", chunk, chunk)[None, :]
    return scores


def _merge_topk(topk: np.ndarray, scores: np.ndarray) -> None:
    """Update each row's descending ``topk`` with a chunk of scores, in place."""
    k = topk.shape[1]
    rows = np.flatnonzero((scores > topk[:, -1:]).any(axis=1))
    if not len(rows):
        return
    merged = np.concatenate([topk[rows], scores[rows]], axis=1)
    part = np.partition(merged, merged.shape[1] - k, axis=1)[:, -k:]
    topk[rows] = -np.sort(-part, axis=1)


def same_identity_pairs(labels: np.ndarray):
    """Ordered ``(gallery_index, probe_index)`` pairs of distinct images of one identity."""
    labels = np.asarray(labels)
    gal, prb = [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        g, p = np.meshgrid(idx, idx, indexing="ij")
        keep = g != p
        gal.append(g[keep])
        prb.append(p[keep])
    return (np.concatenate(gal), np.concatenate(prb)) if gal else (np.zeros(0, int), np.zeros(0, int))


def _pair_scores(feats: np.ndarray, a: np.ndarray, b: np.ndarray, step: int = 65536) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), step):
        x, y = feats[a[s:s + step]], feats[b[s:s + step]]
        out[s:s + step] = -np.sum(np.square(x - y), axis=1)
    return out


def megaface_identification(probes: np.ndarray, probe_labels: Sequence, distractors: np.ndarray,
                            sizes: Optional[Sequence[int]] = None, max_rank: int = 10,
                            far: float = 1e-6, chunk_size: int = 4096,
                            progress: bool = True) -> IdentificationResult:
    """Evaluate the MegaFace challenge 1 metrics in one streaming pass.

    Parameters
    ----------
    probes : np.ndarray
        ``(P, D)`` probe features (FaceScrub).
    probe_labels : sequence
        ``(P,)`` identity of each probe.
    distractors : np.ndarray
        ``(N, D)`` float32 or float16 (a ``np.memmap`` works).
    sizes : sequence of int
        Distractor counts to report, nested prefixes of ``distractors``
        (default: the powers of ten of :data:`DEFAULT_SIZES` up to ``N``).
    max_rank : int
        Length of the CMC curve.
    far : float
        False-accept rate of the reported TAR.

    Returns
    -------
    IdentificationResult
    """
    from insightgluon.progress import Progress

    probes = np.ascontiguousarray(probes, dtype=np.float32)
    labels = np.asarray(probe_labels)
    num = len(distractors)
    if probes.ndim != 2 or distractors.ndim != 2 or probes.shape[1] != distractors.shape[1]:
        raise ConfigError(f"probe features {probes.shape} and distractors {distractors.shape} differ in width")
    sizes = sorted({int(s) for s in (sizes or [s for s in DEFAULT_SIZES if s <= num] or [num])})
    if sizes[0] < 1 or sizes[-1] > num:
        raise ConfigError(f"distractor sizes {sizes} must be between 1 and the {num} distractors available")
    gal, prb = same_identity_pairs(labels)
    if not len(gal):
        raise ConfigError("no identity has two probe images: nothing to evaluate")
    genuine = _pair_scores(probes, gal, prb)
    verify = genuine[gal < prb]  # each unordered pair once
    probe_sq = np.einsum("ij,ij->i", probes, probes)
    topk = np.full((len(probes), max_rank), -np.inf, dtype=np.float32)
    impostors = _TopImpostors(int(np.floor(far * len(probes) * sizes[-1] + 1e-9)) + 1)
    cmc, tar = {}, {}
    start = 0
    with Progress(total=sizes[-1], desc="distractors", unit="img", enabled=bool(progress), leave=False) as bar:
        for size in sizes:
            while start < size:
                stop = min(start + chunk_size, size)
                scores = _neg_sq_dist(probes, probe_sq, distractors[start:stop])
                _merge_topk(topk, scores)
                impostors.add(scores)
                bar.update(stop - start)
                start = stop
            ranks = 1 + np.sum(topk[prb] > genuine[:, None], axis=1)
            cmc[size] = np.array([np.mean(ranks <= k) for k in range(1, max_rank + 1)])
            allowed = int(np.floor(far * len(probes) * size + 1e-9))
            tar[size] = float(np.mean(verify > impostors.threshold(allowed))) if allowed >= 1 else None
    return IdentificationResult(sizes, cmc, tar, far, len(probes), len(gal))


def identify_1n(gallery: np.ndarray, gallery_labels: Sequence, probes: np.ndarray,
                probe_labels: Sequence, max_rank: int = 10, fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
                chunk_size: int = 1024) -> dict:
    """Closed-set 1:N search of ``probes`` in a labelled ``gallery``.

    A probe's rank is ``1 +`` the number of gallery entries of *other*
    identities that score higher than its best same-identity entry (probes
    whose identity is absent from the gallery are skipped). TAR@FAR counts
    every probe/gallery pair: same identity genuine, different impostor.
    Gallery entries labelled -1 are pure distractors.

    Returns
    -------
    dict
        ``{"cmc": [rank-1, ...], "rank1", "rank5", "tar_at_far": {far: tar or None},
        "num_probes", "num_gallery"}``.
    """
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    probes = np.ascontiguousarray(probes, dtype=np.float32)
    glab, plab = np.asarray(gallery_labels), np.asarray(probe_labels)
    mated = np.isin(plab, glab[glab != -1])
    if not mated.any():
        raise ConfigError("no probe identity appears in the gallery")
    probes, plab = probes[mated], plab[mated]
    gal_sq = np.einsum("ij,ij->i", gallery, gallery)
    num_imp = int(np.sum(plab[:, None] != glab[None, :]))
    top = _TopImpostors(int(np.floor(max(fars) * num_imp + 1e-9)) + 1)
    ranks, genuine = [], []
    for s in range(0, len(probes), chunk_size):
        p, lab = probes[s:s + chunk_size], plab[s:s + chunk_size]
        scores = _neg_sq_dist(gallery, gal_sq, p).T  # (chunk, G)
        same = lab[:, None] == glab[None, :]
        genuine.append(scores[same])
        best = np.where(same, scores, -np.inf).max(axis=1)
        imp = np.where(same, -np.inf, scores)
        ranks.append(1 + np.sum(imp > best[:, None], axis=1))
        top.add(scores[~same])
    ranks, genuine = np.concatenate(ranks), np.concatenate(genuine)
    cmc = [float(np.mean(ranks <= k)) for k in range(1, max_rank + 1)]
    tars = {}
    for f in fars:
        allowed = int(np.floor(f * num_imp + 1e-9))
        tars[float(f)] = float(np.mean(genuine > top.threshold(allowed))) if allowed >= 1 else None
    return {"cmc": cmc, "rank1": cmc[0], "rank5": cmc[min(4, max_rank - 1)], "tar_at_far": tars,
            "num_probes": int(len(probes)), "num_gallery": int(len(gallery))}
