"""Data-layer benchmarks: index open time, random read + decode and write throughput.

Builds a synthetic InsightFace-layout ``.rec`` with ``--records`` images (one
small JPEG reused, so building 1M records takes seconds and ~0.4 GB of disk) in
a temporary directory and measures:

* opening the dataset (``FaceRecordDataset``: NumPy ``.idx`` parse + identity
  records), against ``mx.recordio.MXIndexedRecordIO`` building its key dict;
* random read + JPEG decode of 112x112 images (``ds[i]``), one thread;
* writing a dataset of 112x112 JPEGs (``write_face_dataset``).

Runs are interleaved and repeated; min and median are printed.

``--baseline DIR`` instead prints the untrained verification baseline of a
dataset's packs: raw pixels (mean-centred, L2-normalised) and their projection
on 128 PCA components fitted on 2,000 training images, with the legacy 10-fold
protocol.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def _timed(fn):
    tic = time.perf_counter()
    out = fn()
    return time.perf_counter() - tic, out


def _stats(values):
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}"


def build_big(directory, records, per_id, jpeg):
    from insightgluon.data.recordio import write_face_dataset

    samples = ((i // per_id, jpeg) for i in range(records))
    return _timed(lambda: write_face_dataset(directory, samples, image_size=(16, 16)))[0]


def pixel_baseline(directory, components=128, fit_images=2000):
    """Verification accuracy of raw pixels and of PCA on raw pixels, per ``.bin`` in ``directory``."""
    from insightgluon.data.bin import decode_bin
    from insightgluon.data.recordio import FaceRecordDataset
    from insightgluon.eval.verification import evaluate

    ds = FaceRecordDataset(directory)
    pick = np.random.default_rng(0).choice(len(ds), min(fit_images, len(ds)), replace=False)
    train = np.stack([ds[int(i)][0] for i in pick]).reshape(len(pick), -1).astype(np.float32)
    mean = train.mean(axis=0)
    basis = np.linalg.svd(train - mean, full_matrices=False)[2][:components]
    rows = []
    for name in sorted(f[:-4] for f in os.listdir(directory) if f.endswith(".bin")):
        images, issame = decode_bin(os.path.join(directory, f"{name}.bin"))
        pixels = images.reshape(len(images), -1).astype(np.float32) - mean
        accs = []
        for emb in (pixels, pixels @ basis.T):
            accs.append(evaluate(emb / np.linalg.norm(emb, axis=1, keepdims=True), issame).accuracy)
        rows.append(f"{name}: raw pixels {accs[0]:.3f}  PCA-{components} {accs[1]:.3f}\n")
    return rows


def bench_open(big, repeat):
    """Interleaved open times: FaceRecordDataset vs MXIndexedRecordIO's Python key dict."""
    import mxnet as mx

    from insightgluon.data.recordio import FaceRecordDataset

    ours, legacy = [], []
    for _ in range(repeat):
        t, ds = _timed(lambda: FaceRecordDataset(big))
        ours.append(t)
        t, rec = _timed(lambda: mx.recordio.MXIndexedRecordIO(os.path.join(big, "train.idx"),
                                                              os.path.join(big, "train.rec"), "r"))
        legacy.append(t)
        rec.close()
    sys.stdout.write(f"index open, {len(ds)} images: FaceRecordDataset {_stats(ours)} s; "
                     f"MXIndexedRecordIO {_stats(legacy)} s; "
                     f"ratio {statistics.median(legacy) / statistics.median(ours):.1f}x\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="images in the index-open benchmark")
    parser.add_argument("--per-id", type=int, default=68, help="images per identity (MS1M averages 68)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--decode-images", type=int, default=20_000, help="112x112 images for read/write runs")
    parser.add_argument("--tmp", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--baseline", metavar="DIR", help="print the pixel baseline of DIR's .bin packs instead")
    args = parser.parse_args(argv)
    if args.baseline:
        sys.stdout.write("".join(pixel_baseline(args.baseline)))
        return 0

    from insightgluon.data.faces import identity_params, render_face
    from insightgluon.data.image import encode_jpeg
    from insightgluon.data.recordio import FaceRecordDataset, write_face_dataset

    out = sys.stdout.write
    root = tempfile.mkdtemp(prefix="bench_data_", dir=args.tmp)
    try:
        tiny = encode_jpeg(np.full((16, 16, 3), 128, np.uint8), quality=50)
        big = os.path.join(root, "big")
        seconds = build_big(big, args.records, args.per_id, tiny)
        out(f"built {args.records} records ({args.records // args.per_id + 1} identities, "
            f"{os.path.getsize(os.path.join(big, 'train.rec')) / 2**20:.0f} MiB) in {seconds:.1f} s "
            f"= {args.records / seconds:,.0f} records/s (tiny {len(tiny)}-byte JPEG)\n")
        bench_open(big, args.repeat)
        rng = np.random.default_rng(0)
        faces = [encode_jpeg(render_face(identity_params(rng), rng), 90) for _ in range(64)]
        n = args.decode_images
        samples = [(i // 20, faces[i % len(faces)]) for i in range(n)]
        small = os.path.join(root, "small")
        writes, reads = [], []
        for r in range(args.repeat):
            shutil.rmtree(small, ignore_errors=True)
            t, _ = _timed(lambda: write_face_dataset(small, iter(samples)))
            writes.append(n / t)
            ds = FaceRecordDataset(small)
            order = np.random.default_rng(r).permutation(n)
            t, _ = _timed(lambda: [ds[int(i)] for i in order])
            reads.append(n / t)
        out(f"write 112x112 JPEG records ({np.mean([len(f) for f in faces]) / 1024:.1f} KiB): "
            f"min {min(writes):,.0f}  median {statistics.median(writes):,.0f} img/s\n")
        out(f"random read + decode 112x112, one thread: min {min(reads):,.0f}  "
            f"median {statistics.median(reads):,.0f} img/s\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from insightgluon import runtime

    runtime.configure(1)
    sys.exit(main())
