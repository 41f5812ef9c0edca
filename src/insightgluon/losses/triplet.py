"""Triplet loss (legacy loss-type 12) with FaceNet semi-hard mining inside the batch.

The legacy iterator embedded a bag of ``triplet_bag_size`` images with the current
model and mined triplets there; here the bag is the identity-balanced batch itself
(``IdentityBalancedSampler`` builds it), so mining costs no extra forward pass.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon

from insightgluon.errors import ConfigError
from insightgluon.losses.base import LOSSES, LossHead

#: ``images_per_identity`` of the legacy triplet trainer, used when the config says 0.
LEGACY_IMAGES_PER_IDENTITY = 5


def mine_semi_hard(embedding: np.ndarray, labels: np.ndarray, alpha: float, rng: np.random.Generator,
                   max_ap: float = 0.0):
    """Anchor, positive and negative positions of FaceNet semi-hard triplets.

    For every pair (a, p) of the same identity with a before p, one negative is drawn at
    random among those with ``d(a,p) < d(a,n)`` and ``d(a,n) - d(a,p) < alpha``
    (squared Euclidean distances); pairs without one are skipped, as are pairs with
    ``d(a,p) > max_ap`` when ``max_ap > 0``.

    Parameters
    ----------
    embedding : ndarray, shape (N, D)
        L2-normalised embeddings.
    labels : ndarray, shape (N,)
    alpha : float
    rng : numpy.random.Generator

    Returns
    -------
    tuple of three int64 ndarrays, each shape (T,)
    """
    sq = (embedding * embedding).sum(axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * embedding @ embedding.T
    triplets = []
    for identity in np.unique(labels):
        members = np.flatnonzero(labels == identity)
        others = labels != identity
        for i, anchor in enumerate(members):
            for positive in members[i + 1:]:
                pos_d = dist[anchor, positive]
                if max_ap > 0 and pos_d > max_ap:
                    continue
                neg_d = dist[anchor]
                candidates = np.flatnonzero(others & (neg_d > pos_d) & (neg_d - pos_d < alpha))
                if candidates.size:
                    triplets.append((anchor, positive, rng.choice(candidates)))
    if not triplets:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    a, p, n = np.asarray(triplets, np.int64).T
    return a, p, n


class TripletHead(LossHead, gluon.Block):
    """Triplet loss ``relu(‖a-p‖² - ‖a-n‖² + α)`` on L2-normalised embeddings.

    Parameters
    ----------
    alpha : float
        Margin (legacy ``--triplet-alpha``, 0.3).
    images_per_identity : int
        Images of each identity per batch, for the trainer's sampler (legacy 5).
    max_ap : float
        Skip anchor-positive pairs farther than this (legacy ``--triplet-max-ap``; 0 = off).
    seed : int
        Seed of the negative choice.

    Call ``head(embedding (N, D), label (N,))`` → ``(loss (N,), None)``. Each triplet's
    loss is charged to its anchor and scaled by N/T (T mined triplets), so
    ``loss.mean()`` is the legacy mean over triplets; without triplets it is 0.
    """

    needs_identity_batches = True

    def __init__(self, alpha=0.3, images_per_identity=5, max_ap=0.0, seed=0):
        super().__init__(prefix="")
        self.alpha = float(alpha)
        self.images_per_identity = int(images_per_identity)
        self.max_ap = float(max_ap)
        self._rng = np.random.default_rng(seed)
        self.last_triplets = 0

    def forward(self, embedding, label):
        x = mx.nd.L2Normalization(embedding, mode="instance")
        a, p, n = mine_semi_hard(x.asnumpy(), label.asnumpy().astype(np.int64), self.alpha, self._rng,
                                 self.max_ap)
        self.last_triplets = len(a)
        count = x.shape[0]
        if not len(a):
            return (x * 0).sum(axis=1), None
        ctx = x.context
        xa, xp, xn = (mx.nd.take(x, mx.nd.array(i, ctx=ctx)) for i in (a, p, n))
        per_triplet = mx.nd.relu(((xa - xp) ** 2).sum(axis=1) - ((xa - xn) ** 2).sum(axis=1) + self.alpha)
        to_anchor = mx.nd.one_hot(mx.nd.array(a, ctx=ctx), depth=count)
        return mx.nd.dot(to_anchor, per_triplet, transpose_a=True) * (count / len(a)), None

    def accuracy(self, logits, label):
        raise ValueError("triplet loss has no logits; it has no training accuracy")


@LOSSES.register("triplet")
def _triplet(num_classes, emb_size, hyper):
    """Loss-type 12."""
    per_identity = hyper.get("images_per_identity", 0, kind=int, low=0) or LEGACY_IMAGES_PER_IDENTITY
    if per_identity < 2:
        raise ConfigError(f"loss triplet: images_per_identity={per_identity} must be >= 2 (0: default 5)")
    return TripletHead(alpha=hyper.get("triplet_alpha", 0.3, low=0.0, low_open=True),
                       images_per_identity=per_identity,
                       max_ap=hyper.get("triplet_max_ap", 0.0, low=0.0),
                       seed=hyper.get("seed", 0, kind=int))
