"""Seeded arcface_torch-style state dicts: the same arrays for a key and shape wherever they are made.

Each array is drawn from a generator seeded by its key's CRC-32, so PyTorch (making the reference
outputs once, ``tests/data/arcface_torch/make_reference.py``) and the tests (without PyTorch) build
identical weights in any key order. Scales keep activations finite through a whole network.
"""
import zlib

import numpy as np

#: Raw RGB faces both sides embed: two 112x112 images of whole pixel values.
IMAGE_SEED = 7


def seeded_array(key: str, shape) -> np.ndarray:
    rng = np.random.RandomState(zlib.crc32(key.encode()) & 0xFFFFFFFF)
    leaf = key.rpartition(".")[2]
    shape = tuple(int(d) for d in shape)
    if leaf == "num_batches_tracked":
        return np.array(0, dtype=np.int64)
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf in ("running_mean", "bias"):
        return rng.normal(0, 0.1, shape).astype(np.float32)
    if len(shape) == 1:  # BatchNorm/LayerNorm scales, PReLU slopes
        return rng.uniform(0.1, 1.2, shape).astype(np.float32)
    if leaf in ("pos_embed", "mask_token"):
        return rng.normal(0, 0.02, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (rng.normal(0, 1, shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def seeded_state_dict(shapes) -> dict:
    """``{key: array}`` for ``{key: shape}`` (a PyTorch state dict's keys and shapes)."""
    return {key: seeded_array(key, shape) for key, shape in shapes.items()}


def seeded_images(count: int = 2) -> np.ndarray:
    rng = np.random.RandomState(IMAGE_SEED)
    return np.round(rng.uniform(0, 255, (count, 3, 112, 112))).astype(np.float32)
