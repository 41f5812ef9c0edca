"""Samplers that shape batches by identity (triplet loss needs several images of each identity)."""
import numpy as np
from mxnet import gluon

from insightgluon.errors import ConfigError


class IdentityBalancedSampler(gluon.data.Sampler):
    """Yield positions so that every batch holds ``batch_size // images_per_identity`` identities.

    Each epoch shuffles the identities and, for each, draws ``images_per_identity``
    of its positions (without replacement when it has enough images, with
    replacement otherwise). One epoch covers about as many images as the
    dataset; every call to ``iter`` starts a new epoch with a new permutation.

    Parameters
    ----------
    labels : array-like
        ``(N,)`` integer label of each dataset position.
    images_per_identity : int
        Images of one identity in a batch (the legacy ``--images-per-identity``).
    batch_size : int
        Positions per batch; a multiple of ``images_per_identity``.
    seed : int
        Epoch ``e`` uses ``np.random.default_rng([seed, e])``.
    """

    def __init__(self, labels, images_per_identity: int, batch_size: int, seed: int = 0):
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if images_per_identity < 1 or batch_size < images_per_identity or batch_size % images_per_identity:
            raise ConfigError(f"batch size {batch_size} must be a positive multiple of images-per-identity "
                              f"{images_per_identity}")
        order = np.argsort(labels, kind="stable")
        ids, starts = np.unique(labels[order], return_index=True)
        self._groups = np.split(order, starts[1:])
        self.ids_per_batch = batch_size // images_per_identity
        if len(self._groups) < self.ids_per_batch:
            raise ConfigError(f"a batch needs {self.ids_per_batch} identities but the data has {len(ids)}")
        self.images_per_identity = images_per_identity
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._num_batches = max(1, len(labels) // batch_size)

    def __len__(self) -> int:
        return self._num_batches * self.batch_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        k, groups = self.images_per_identity, self._groups
        identities = np.empty(0, dtype=np.int64)
        for _ in range(self._num_batches):
            if identities.size < self.ids_per_batch:  # refill: every identity once before any repeats
                identities = np.concatenate([identities, rng.permutation(len(groups))])
            chosen, identities = identities[:self.ids_per_batch], identities[self.ids_per_batch:]
            for g in chosen:
                members = groups[g]
                pick = rng.choice(members, size=k, replace=members.size < k)
                yield from pick.tolist()
