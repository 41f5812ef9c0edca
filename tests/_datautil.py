"""Tiny InsightFace-format datasets for tests of any area (``from _datautil import ...``).

Images are 112x112 JPEGs whose colours and a bar position depend on the identity,
so identities are distinguishable, and a small per-image offset makes images differ.
"""
import os

import numpy as np

from insightgluon.data.bin import save_bin
from insightgluon.data.image import encode_jpeg
from insightgluon.data.recordio import write_face_dataset


def tiny_face(identity: int, index: int = 0, size: int = 112) -> np.ndarray:
    """A deterministic ``(size, size, 3)`` uint8 RGB image for ``identity`` (variant ``index``)."""
    rng = np.random.default_rng(1000 + identity)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = rng.integers(40, 215, size=3, dtype=np.uint8)
    bar = int(rng.integers(0, size - 16))
    img[bar:bar + 16, :, :] = rng.integers(0, 255, size=3, dtype=np.uint8)
    shift = (index * 3) % 11
    img[:, shift:shift + 4] = 255 - img[:, shift:shift + 4]
    return img


def make_tiny_dataset(tmp_path, num_ids: int = 4, per_id: int = 3, name: str = "tiny", size: int = 112) -> str:
    """Write ``tmp_path/name`` with ``train.rec/.idx/property``; returns the directory path."""
    out = os.path.join(os.fspath(tmp_path), name)
    samples = ((k, encode_jpeg(tiny_face(k, i, size))) for k in range(num_ids) for i in range(per_id))
    write_face_dataset(out, samples, image_size=(size, size))
    return out


def make_tiny_bin(path, num_pairs: int = 4, size: int = 112, first_identity: int = 100) -> str:
    """Write a ``.bin`` pack of ``num_pairs`` pairs alternating same/different; returns ``path``."""
    bins, issame = [], []
    for p in range(num_pairs):
        a = first_identity + p
        same = p % 2 == 0
        b = a if same else a + 1000
        bins += [encode_jpeg(tiny_face(a, 0, size)), encode_jpeg(tiny_face(b, 1, size))]
        issame.append(same)
    save_bin(os.fspath(path), bins, issame)
    return os.fspath(path)


def legacy_y1(prefix: str, emb_size: int = 64, seed: int = 0, passes: int = 20) -> str:
    """A 2018-style MobileFaceNet checkpoint ``prefix-0001`` (``LeakyReLU`` PReLU in its graph).

    Random weights; the BatchNorm statistics are those of :func:`tiny_face` images, so
    embeddings differ between identities and an accuracy is neither 0.5 nor 1.
    """
    import mxnet as mx

    from insightgluon.export.deploy import save_checkpoint
    from insightgluon.networks import get_network

    mx.random.seed(seed)
    net = get_network("y1", emb_size=emb_size, version_act="prelu_native")
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    faces = mx.nd.array(np.stack([tiny_face(k, j) for k in range(4) for j in range(2)]).transpose(0, 3, 1, 2))
    with mx.autograd.train_mode():
        for _ in range(passes):
            net(faces)
    save_checkpoint(prefix, 1, net(mx.sym.var("data")),
                    {k: mx.nd.array(p.data().asnumpy()) for k, p in net.collect_params().items()})
    return prefix
