"""Embedding throughput of verification: img/s on a synthetic LFW-sized ``.bin``.

Builds a ``.bin`` of ``--pairs`` random pairs (LFW: 6,000 pairs = 12,000
images), loads it with ``VerificationSet.load`` and times ``verify_model``
(flip: every image is forwarded twice) for each network, freshly
initialised (throughput does not depend on the weights). ``--limit`` embeds
only the first N images of the set, for slow networks on a CPU; the full-set
time is extrapolated from it. Runs are repeated and interleaved.

    OMP_NUM_THREADS=2 python bench/verify.py --networks y1,r50 --limit 512,128
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def make_bin(path: str, pairs: int, size: int = 112) -> None:
    import cv2

    from insightgluon.data.bin import save_bin

    rng = np.random.default_rng(0)
    base = [cv2.imencode(".jpg", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))[1].tobytes()
            for _ in range(64)]
    save_bin(path, [base[i % 64] for i in range(2 * pairs)], np.arange(pairs) % 2 == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="y1,r50")
    parser.add_argument("--limit", default="512,128", help="images embedded per network (0 = all)")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from insightgluon import runtime

    runtime.configure()
    import mxnet as mx

    from insightgluon.eval.embed import embed_images
    from insightgluon.eval.verification import VerificationSet, verify_model
    from insightgluon.networks import get_network

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lfw.bin")
        make_bin(path, args.pairs)
        start = time.perf_counter()
        vset = VerificationSet.load(path)
        sys.stdout.write(f"loaded {len(vset.images)} images in {time.perf_counter() - start:.1f} s\n")
    names = args.networks.split(",")
    limits = [int(x) for x in args.limit.split(",")]
    limits += limits[-1:] * (len(names) - len(limits))
    nets = {}
    for name in names:
        net = get_network(name)
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        nets[name] = net
    timings = {n: [] for n in names}
    for _ in range(args.repeat):
        for name, limit in zip(names, limits):
            count = limit or len(vset.images)
            subset = VerificationSet(vset.name, vset.images[:count], vset.issame[:count // 2])
            embed_images(nets[name], subset.images[:args.batch_size], batch_size=args.batch_size)
            start = time.perf_counter()
            verify_model(nets[name], subset, batch_size=args.batch_size)
            timings[name].append(count / (time.perf_counter() - start))
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    for name in names:
        best, med = max(timings[name]), statistics.median(timings[name])
        sys.stdout.write(f"{name}: {best:.1f} img/s best, {med:.1f} median (flip: 2 forwards per image, "
                         f"batch {args.batch_size}, OMP {threads}); 12,000 images ~ {12000 / med / 60:.1f} min\n")


if __name__ == "__main__":
    main()
