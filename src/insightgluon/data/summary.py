"""Summaries, sample dumps and unpacking of ``.rec`` datasets and ``.bin`` packs (``insightgluon inspect``)."""
import os
from typing import Dict, List

import numpy as np

from insightgluon.data._atomic import atomic_dir
from insightgluon.data.bin import load_bin
from insightgluon.data.image import decode_jpeg
from insightgluon.data.recordio import FaceRecordDataset

# upper bounds of the "images per identity" histogram buckets
_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def histogram(counts: np.ndarray) -> Dict[str, int]:
    """Number of identities per bucket of images-per-identity (``"6-10": 17``)."""
    out, low = {}, 1
    for high in _BUCKETS:
        n = int(np.count_nonzero((counts >= low) & (counts <= high)))
        if n:
            out[str(low) if low == high else f"{low}-{high}"] = n
        low = high + 1
    n = int(np.count_nonzero(counts >= low))
    if n:
        out[f">{_BUCKETS[-1]}"] = n
    return out


def describe_rec(ds: FaceRecordDataset) -> List[str]:
    """Report lines for a dataset."""
    counts = ds.identity_counts()
    present = counts[counts > 0]
    layout = (f"InsightFace (header + {ds.num_identity_records} identity records)" if ds.num_identity_records
              else "plain im2rec (no identity records; labels from image headers)")
    first = ds[0][0].shape if len(ds) else None
    lines = [f"dataset: {ds.rec_path}", f"layout: {layout}", f"images: {len(ds)}",
             f"identities: {ds.num_identities} with images, num_classes {ds.num_classes}",
             f"image size: property {_size(ds.image_size)}, first image {_size(first)}"]
    if present.size:
        lines.append(f"images per identity: min {present.min()}, median {int(np.median(present))}, "
                     f"mean {present.mean():.1f}, max {present.max()}")
        lines.append("histogram (images per identity: identities): "
                     + ", ".join(f"{k}: {v}" for k, v in histogram(present).items()))
    lines.append(f"file size: {os.path.getsize(ds.rec_path) / 2**20:.1f} MiB")
    return lines


def describe_bin(path: str) -> List[str]:
    """Report lines for a ``.bin`` pack."""
    bins, issame = load_bin(path)
    first = decode_jpeg(bins[0], f"{path}: image 0").shape if bins else None
    same = int(issame.sum())
    return [f"pack: {path}", f"pairs: {len(issame)} ({same} same, {len(issame) - same} different)",
            f"images: {len(bins)}, first {_size(first)}, mean {np.mean([len(b) for b in bins]) / 1024:.1f} KiB"]


def _size(shape) -> str:
    return "-" if shape is None else f"{shape[0]}x{shape[1]}"


def dump_rec(ds: FaceRecordDataset, count: int, out_dir: str) -> List[str]:
    """Write ``count`` images spread over the dataset as ``<position>_label<k>.jpg``."""
    os.makedirs(out_dir, exist_ok=True)
    positions = np.unique(np.linspace(0, len(ds) - 1, num=min(count, len(ds))).astype(int))
    written = []
    for pos in positions.tolist():
        label, jpeg = ds.read(pos)
        written.append(_write(os.path.join(out_dir, f"{pos:07d}_label{label}.jpg"), jpeg))
    return written


def dump_bin(path: str, count: int, out_dir: str) -> List[str]:
    """Write the first ``count`` pairs as ``pair<i>_<a|b>_<same|diff>.jpg``."""
    bins, issame = load_bin(path)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i in range(min(count, len(issame))):
        tag = "same" if issame[i] else "diff"
        for j, side in enumerate("ab"):
            written.append(_write(os.path.join(out_dir, f"pair{i:05d}_{side}_{tag}.jpg"), bins[2 * i + j]))
    return written


def unpack_rec(ds: FaceRecordDataset, out_dir: str) -> int:
    """Write every image to ``out_dir/<label>/<position>.jpg`` (the input of ``face2rec``), atomically.

    Folder names are zero-padded labels, so sorting them gives back the same labels.
    """
    with atomic_dir(out_dir) as tmp:
        for k in range(ds.num_classes):
            positions = ds.identity_positions(k)
            if positions.size:
                folder = os.path.join(tmp, f"{k:07d}")
                os.makedirs(folder)
                for pos in positions.tolist():
                    _write(os.path.join(folder, f"{pos:08d}.jpg"), ds.read(pos)[1])
    return len(ds)


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path
