"""The embedded synthetic face dataset: ``faces_synth_112x112`` in the InsightFace layout.

Training identities and the identities of each verification pack are disjoint
by construction: identity ``g`` is drawn from a generator seeded with
``(seed, g)`` and every split takes its own range of ``g``. Every image is
drawn from a generator seeded with its own coordinates, so the output is the
same for any number of worker processes.
"""
import logging
import multiprocessing
import os
from typing import Iterator, List, Sequence, Tuple

import cv2
import numpy as np

from insightgluon.data._atomic import atomic_dir
from insightgluon.data.bin import save_bin
from insightgluon.data.faces import identity_params, render_face
from insightgluon.data.image import encode_jpeg
from insightgluon.data.recordio import write_face_dataset
from insightgluon.progress import progress

log = logging.getLogger(__name__)

# name -> (pose of image 1, pose of image 2, appearance drift of image 2). cfp_fp pairs a near-frontal
# image with a strongly turned one; agedb_30 adds greying, skin and wrinkle drift to the second image.
VERIFICATION_PACKS = {
    "lfw": (1.0, 1.0, 0.0),
    "cfp_fp": (0.6, 1.7, 0.0),
    "agedb_30": (1.0, 1.0, 0.3),
}
_TRAIN, _PAIR = 1, 2  # stream tags that keep image generators of different splits apart


def _identity(seed: int, g: int):
    return identity_params(np.random.default_rng([seed, 0, g]))


def _encode(rgb: np.ndarray, rng: np.random.Generator) -> bytes:
    return encode_jpeg(rgb, quality=int(rng.integers(75, 96)))


def render_identity(seed: int, g: int, count: int, image_size: int = 112) -> List[bytes]:
    """JPEG bytes of ``count`` training images of identity ``g``."""
    params = _identity(seed, g)
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, _TRAIN, g, i])
        out.append(_encode(render_face(params, rng, image_size), rng))
    return out


def render_pair(seed: int, pack: int, index: int, ga: int, gb: int, pose_a: float, pose_b: float,
                drift: float, image_size: int = 112) -> Tuple[bytes, bytes]:
    """The two JPEGs of verification pair ``index`` of pack number ``pack`` (identities ``ga``, ``gb``)."""
    images = []
    for j, (g, pose, dr) in enumerate(((ga, pose_a, 0.0), (gb, pose_b, drift))):
        rng = np.random.default_rng([seed, _PAIR, pack, index, j])
        images.append(_encode(render_face(_identity(seed, g), rng, image_size, pose=pose, drift=dr), rng))
    return images[0], images[1]


def _render_identity_star(args) -> List[bytes]:
    return render_identity(*args)


def _render_pair_star(args) -> Tuple[bytes, bytes]:
    return render_pair(*args)


def pair_plan(num_pairs: int, first_id: int, num_ids: int, rng: np.random.Generator):
    """``(ga, gb, same)`` per pair, alternating same/different so every contiguous fold is balanced."""
    plan = []
    for i in range(num_pairs):
        a = first_id + int(rng.integers(num_ids))
        if i % 2 == 0:
            plan.append((a, a, True))
        else:
            b = first_id + (a - first_id + 1 + int(rng.integers(num_ids - 1))) % num_ids
            plan.append((a, b, False))
    return plan


def _imap(fn, jobs: Sequence, num_workers: int, desc: str, unit: str) -> Iterator:
    bar = dict(total=len(jobs), desc=f"synth {desc}", unit=unit)
    if num_workers <= 1:
        yield from progress(map(fn, jobs), **bar)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        yield from progress(pool.imap(fn, jobs, chunksize=8), **bar)


def make_synthetic_dataset(out_dir: str, num_ids: int = 500, imgs_per_id: int = 20, num_val_ids: int = 100,
                           pairs_per_bin: int = 400, seed: int = 0, image_size: int = 112,
                           num_workers: int = 0) -> str:
    """Write ``train.rec/.idx/property`` plus ``lfw.bin``, ``cfp_fp.bin`` and ``agedb_30.bin``.

    Parameters
    ----------
    out_dir : str
        Output directory, published atomically.
    num_ids, imgs_per_id : int
        Training identities and images per identity.
    num_val_ids : int
        Identities of each verification pack (disjoint from training and from each other).
    pairs_per_bin : int
        Pairs per pack, half same and half different.
    seed : int
        Everything is a function of the seed.
    image_size : int
        Side of the square images.
    num_workers : int
        Rendering processes; 0 or 1 renders in this process.

    Returns
    -------
    str
        ``out_dir``.
    """
    if num_ids < 1 or imgs_per_id < 1:
        raise ValueError(f"need at least one identity and one image per identity, got {num_ids}x{imgs_per_id}")
    if num_val_ids < 2 or pairs_per_bin < 2 or pairs_per_bin % 2:
        raise ValueError(f"verification packs need >= 2 identities and an even number of pairs "
                         f"(got {num_val_ids} ids, {pairs_per_bin} pairs)")
    with atomic_dir(out_dir) as tmp:
        jobs = [(seed, g, imgs_per_id, image_size) for g in range(num_ids)]
        rendered = _imap(_render_identity_star, jobs, num_workers, "train", "identity")
        samples = ((label, jpeg) for label, jpegs in enumerate(rendered) for jpeg in jpegs)
        write_face_dataset(tmp, samples, image_size=(image_size, image_size))
        for pack, (name, (pose_a, pose_b, drift)) in enumerate(VERIFICATION_PACKS.items()):
            first = num_ids + pack * num_val_ids
            plan = pair_plan(pairs_per_bin, first, num_val_ids, np.random.default_rng([seed, 3, pack]))
            jobs = [(seed, pack, i, a, b, pose_a, pose_b, drift, image_size) for i, (a, b, _) in enumerate(plan)]
            bins = [jpeg for pair in _imap(_render_pair_star, jobs, num_workers, name, "pair") for jpeg in pair]
            save_bin(os.path.join(tmp, f"{name}.bin"), bins, [same for _, _, same in plan])
    log.info("synthetic dataset in %s: %d identities x %d images, packs %s of %d pairs", out_dir, num_ids,
             imgs_per_id, ", ".join(VERIFICATION_PACKS), pairs_per_bin)
    return out_dir


def save_preview(path: str, seed: int = 0, rows: int = 6, cols: int = 8, image_size: int = 112) -> str:
    """Save a PNG grid: each row shows ``cols`` training images of one identity."""
    grid = np.concatenate([np.concatenate([render_face(_identity(seed, g), np.random.default_rng([seed, _TRAIN, g, i]),
                                                       image_size) for i in range(cols)], axis=1)
                           for g in range(rows)], axis=0)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"{path}: OpenCV could not write the preview (use a .png name)")
    return path
