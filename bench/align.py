"""Alignment throughput: MTCNN detection + 5-point warp on 250x250 photos (LFW size).

Compares one-at-a-time detection with batched detection (P-Net levels shared
across equal-sized images), for each engine running the three networks (MXNet,
OpenVINO), interleaved and repeated; prints faces/s and the ratios.

Usage: python bench/align.py [--images 32] [--repeats 3] [--threads 0] [--engines mxnet,openvino]
"""
import argparse
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="OpenMP threads (0: all cores)")
    parser.add_argument("--engines", default="mxnet,openvino", help="what runs the three networks")
    args = parser.parse_args(argv)

    from insightgluon import runtime

    runtime.configure(args.threads)
    import cv2
    import numpy as np
    from skimage import data

    from insightgluon.align.mtcnn import MTCNN
    from insightgluon.align.transform import align_face, select_face

    base = data.astronaut()
    rng = np.random.default_rng(0)
    images = []
    for _ in range(args.images):  # jittered crops around the face, resized to LFW's 250x250
        x, y = (int(v) for v in rng.integers(0, 120, 2))
        side = int(rng.integers(300, 390))
        crop = base[y:y + side, x:x + side]
        images.append(cv2.resize(crop, (250, 250), interpolation=cv2.INTER_AREA))
    engines = args.engines.split(",")
    # legacy align_lfw settings: min_size 20, factor 0.85
    detectors = {engine: MTCNN(engine=engine) for engine in engines}

    def one_by_one(detector):
        return lambda: [detector.detect(img) for img in images]

    def batched(detector):
        def call():
            out = []
            for i in range(0, len(images), args.batch_size):
                out.extend(detector.detect_batch(images[i:i + args.batch_size]))
            return out
        return call

    def run(detect):
        start = time.perf_counter()
        found = 0
        for img, (boxes, points) in zip(images, detect()):
            if len(boxes):
                align_face(img, points[select_face(boxes, img.shape)])
                found += 1
        return found, time.perf_counter() - start

    modes = {f"{engine} {mode}": make(detectors[engine]) for engine in engines
             for mode, make in (("single", one_by_one), ("batched", batched))}
    for fn in modes.values():
        run(fn)  # warm-up: hybridized graphs for every pyramid shape
    times = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, fn in modes.items():
            found, seconds = run(fn)
            times[name].append(seconds)
    sys.stdout.write(f"{args.images} images 250x250, faces found {found}/{args.images}, "
                     f"OMP_NUM_THREADS={__import__('os').environ.get('OMP_NUM_THREADS')}\n")
    for name, values in times.items():
        rate = [args.images / t for t in values]
        sys.stdout.write(f"{name:18s} faces/s: max {max(rate):6.1f}  median {statistics.median(rate):6.1f}  "
                         f"(ms/img min {1000 * min(values) / args.images:.1f})\n")
    for engine in engines:
        ratio = statistics.median(times[f"{engine} single"]) / statistics.median(times[f"{engine} batched"])
        sys.stdout.write(f"{engine}: batched / single speed-up (median): {ratio:.2f}x\n")
    for mode in ("single", "batched"):
        if len(engines) > 1:
            ratio = statistics.median(times[f"{engines[0]} {mode}"]) / statistics.median(times[f"{engines[1]} {mode}"])
            sys.stdout.write(f"{mode}: {engines[1]} / {engines[0]} speed-up (median): {ratio:.2f}x\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
