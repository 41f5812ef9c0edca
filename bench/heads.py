"""Forward+backward time and memory of the margin head: full fc7 vs Partial FC.

Each configuration runs in its own process (so peak RSS is its own), the
configurations are interleaved and repeated; the report gives min and median
milliseconds per forward+backward step and the ratio full / partial.

    python bench/heads.py                      # 85k and 1M classes, batch 64, emb 512, r = 0.1
    python bench/heads.py --classes 10000 --repeat 2
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def worker(num_classes, mode, batch, emb, rate, iters):
    """Time ``iters`` forward+backward steps of one head; return a dict of figures."""
    from insightgluon.runtime import configure

    configure()
    import mxnet as mx
    import numpy as np
    from mxnet import autograd

    from insightgluon.losses import create_loss

    hyper = {"sample_rate": rate} if mode == "partial" else {}
    head = create_loss("arcface", num_classes, emb, **hyper)
    head.initialize(mx.init.Normal(0.01))
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.normal(size=(batch, emb)))
    x.attach_grad()
    label = mx.nd.array(rng.integers(0, num_classes, size=batch))
    times = []
    for i in range(iters + 1):
        start = time.perf_counter()
        with autograd.record():
            loss, _ = head(x, label)
        loss.backward()
        mx.nd.waitall()
        if i:  # the first step allocates buffers
            times.append((time.perf_counter() - start) * 1e3)
    weight = head.collect_params()["fc7_weight"]
    param_bytes = weight.data().size * 4
    return {"classes": num_classes, "mode": mode, "ms": times, "param_bytes": param_bytes,
            "grad_bytes": weight.grad().size * 4,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run_child(args, num_classes, mode):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(num_classes), mode,
           "--batch", str(args.batch), "--emb", str(args.emb), "--rate", str(args.rate),
           "--iters", str(args.iters)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(results, args):
    lines = [f"arcface head, batch {args.batch}, emb {args.emb}, Partial FC r={args.rate}, "
             f"{args.repeat} runs x {args.iters} steps, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'all')}",
             f"{'classes':>9} {'head':>8} {'min ms':>9} {'median ms':>10} {'param MB':>9} {'grad MB':>8} "
             f"{'peak RSS MB':>12}"]
    for num_classes in args.classes:
        medians = {}
        for mode in ("full", "partial"):
            rows = results[(num_classes, mode)]
            ms = [t for r in rows for t in r["ms"]]
            medians[mode] = statistics.median(ms)
            lines.append(f"{num_classes:>9} {mode:>8} {min(ms):>9.1f} {medians[mode]:>10.1f} "
                         f"{rows[0]['param_bytes'] / 2**20:>9.0f} {rows[0]['grad_bytes'] / 2**20:>8.0f} "
                         f"{max(r['peak_rss_bytes'] for r in rows) / 2**20:>12.0f}")
        lines.append(f"{num_classes:>9} speed-up full/partial (median): {medians['full'] / medians['partial']:.2f}x")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[85000, 1000000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--emb", type=int, default=512)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("CLASSES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        figures = worker(int(args.worker[0]), args.worker[1], args.batch, args.emb, args.rate, args.iters)
        sys.stdout.write(json.dumps(figures) + "\n")
        return 0
    results = {}
    for _ in range(args.repeat):
        for num_classes in args.classes:
            for mode in ("full", "partial"):
                results.setdefault((num_classes, mode), []).append(run_child(args, num_classes, mode))
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
