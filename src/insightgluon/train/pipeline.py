"""The training data pipeline: a resumable batch schedule and augmented samples.

Every random choice of the data side is a pure function of ``(seed, epoch,
sample index)``: the order of an epoch is a permutation drawn from
``(seed, epoch)`` (or the identity-balanced sampler seeded the same way) and
each sample's augmentation uses its own generator seeded from
``(seed, epoch, index)``. So the data of batch ``k`` does not depend on how many
worker processes decode it, nor on whether the run was interrupted before it,
and resuming needs only the batch counter.
"""
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.data.image import resize_to

Key = Tuple[int, int, int]  # (dataset position, epoch, sample index within the epoch)


class BatchSchedule:
    """Global batches for steps ``[start, stop)``, this worker's slice of each.

    Parameters
    ----------
    labels : np.ndarray
        Label of each dataset position.
    global_batch : int
        Samples per step over all workers and devices.
    seed : int
    rank, num_workers : int
        This process's slice of each global batch (``dist_sync`` sharding).
    identity_sampler : callable, optional
        ``identity_sampler(seed) -> iterable of positions`` for identity-balanced
        epochs (triplet loss); default a uniform permutation.
    """

    def __init__(self, labels: np.ndarray, global_batch: int, seed: int = 0, rank: int = 0,
                 num_workers: int = 1, identity_sampler=None):
        if global_batch % num_workers:
            raise ValueError(f"global batch {global_batch} is not divisible by {num_workers} workers")
        self.num_samples = int(len(labels))
        self.global_batch, self.seed = int(global_batch), int(seed)
        self.rank, self.num_workers = rank, num_workers
        self._identity_sampler = identity_sampler
        self._cache: Tuple[int, Optional[np.ndarray]] = (-1, None)
        if self.epoch_steps(0) == 0:
            raise ValueError(f"{self.num_samples} training images cannot fill one batch of {global_batch}")
        self.start = self.stop = 0
        self.end_epoch: Optional[int] = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions of epoch ``epoch`` in training order, whole batches only."""
        if self._cache[0] == epoch:
            return self._cache[1]
        seed = [self.seed, epoch]
        if self._identity_sampler is None:
            order = np.random.default_rng(seed).permutation(self.num_samples)
        else:
            mixed = int(np.random.SeedSequence(seed).generate_state(1)[0])
            order = np.fromiter(self._identity_sampler(mixed), dtype=np.int64)
        order = order[: len(order) // self.global_batch * self.global_batch]
        self._cache = (epoch, order)
        return order

    def epoch_steps(self, epoch: int) -> int:
        return len(self.epoch_order(epoch)) // self.global_batch

    def locate(self, step: int) -> Tuple[int, int]:
        """``(epoch, batch index within the epoch)`` of the 0-based global ``step``."""
        epoch = 0
        if self._identity_sampler is None:
            per = self.epoch_steps(0)
            return step // per, step % per
        while step >= self.epoch_steps(epoch):
            step -= self.epoch_steps(epoch)
            epoch += 1
        return epoch, step

    def window(self, start: int, stop: int, end_epoch: Optional[int] = None) -> "BatchSchedule":
        """Restrict iteration to global steps ``[start, stop)`` and epochs before ``end_epoch``."""
        self.start, self.stop, self.end_epoch = start, stop, end_epoch
        return self

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[List[Key]]:
        epoch, index = self.locate(self.start)
        share = self.global_batch // self.num_workers
        for _ in range(len(self)):
            order = self.epoch_order(epoch)
            if index >= len(order) // self.global_batch:
                epoch, index = epoch + 1, 0
                order = self.epoch_order(epoch)
            if self.end_epoch is not None and epoch >= self.end_epoch:
                return
            first = index * self.global_batch + self.rank * share
            yield [(int(order[i]), epoch, i) for i in range(first, first + share)]
            index += 1


class AugmentedSamples:
    """``samples[(pos, epoch, i)] -> (rgb uint8 HWC, label, epoch, i)`` with per-sample RNG.

    Picklable (DataLoader workers); the dataset opens its file lazily per process.
    """

    def __init__(self, dataset, augment, image_hw: Sequence[int], seed: int = 0):
        self.dataset, self.augment = dataset, augment
        self.image_hw = tuple(int(v) for v in image_hw)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key):
        pos, epoch, index = key
        rgb, label = self.dataset[pos]
        rgb = resize_to(rgb, self.image_hw)
        if self.augment is not None:
            rgb = self.augment(rgb, np.random.default_rng([self.seed, epoch, index, 1]))
        return rgb, label, epoch, index


def batchify(samples) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Stack samples: ``(images uint8 (N,H,W,3), labels float32 (N,), epoch, first sample index)``.

    NumPy only, so decoding workers never start MXNet's OpenMP pool.
    """
    images = np.stack([s[0] for s in samples])
    labels = np.asarray([s[1] for s in samples], dtype=np.float32)
    return images, labels, samples[0][2], samples[0][3]


def make_loader(samples: AugmentedSamples, schedule: BatchSchedule, workers: int):
    """A Gluon DataLoader over ``schedule`` with ``workers`` decoding processes."""
    from mxnet import gluon

    return gluon.data.DataLoader(samples, batch_sampler=schedule, batchify_fn=batchify,
                                 num_workers=workers, prefetch=2 * max(1, workers) if workers else None)
