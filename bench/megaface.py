"""Time and peak memory of the streaming MegaFace evaluator on synthetic features.

Each configuration runs in a fresh subprocess so its peak RSS is its own.
Probes: ``probes / 20`` identities x 20 images of 512-d unit features;
distractors: random unit features (generated in chunks straight into the
storage dtype, not timed).

    python bench/megaface.py                       # 1k x 100k and 1k x 1M, float32 and float16
    python bench/megaface.py --configs 3500x1000000:float16
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _features(rows, dim, dtype, rng, step=65536):
    out = np.empty((rows, dim), dtype=dtype)
    for s in range(0, rows, step):
        x = rng.standard_normal((min(step, rows - s), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + len(x)] = x
    return out


def run_one(probes: int, distractors: int, dtype: str, dim: int = 512) -> dict:
    from insightgluon.eval.identification import megaface_identification

    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(probes // 20), 20)
    centres = _features(len(ids) // 20, dim, np.float32, rng)
    prb = centres[ids] + 0.05 * rng.standard_normal((len(ids), dim), dtype=np.float32)
    prb /= np.linalg.norm(prb, axis=1, keepdims=True)
    dis = _features(distractors, dim, np.dtype(dtype), rng)
    sizes = [s for s in (10, 100, 1000, 10000, 100000, 1000000) if s <= distractors]
    start = time.perf_counter()
    res = megaface_identification(prb, ids, dis, sizes, progress=False)
    seconds = time.perf_counter() - start
    return {"probes": len(ids), "distractors": distractors, "dtype": dtype, "seconds": round(seconds, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
            "rank1": round(res.rank(1), 4), "tar": res.tar[sizes[-1]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="1000x100000:float32,1000x100000:float16,"
                        "1000x1000000:float32,1000x1000000:float16",
                        help="PROBESxDISTRACTORS:DTYPE, comma-separated")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        shape, dtype = args.one.split(":")
        p, d = (int(x) for x in shape.split("x"))
        sys.stdout.write(json.dumps(run_one(p, d, dtype)) + "\n")
        return
    for config in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", config], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        sys.stdout.write(f"{r['probes']:>5d} probes x {r['distractors']:>8d} distractors ({r['dtype']}): "
                         f"{r['seconds']:7.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
                         f"rank-1 {r['rank1']}, TAR@1e-6 {r['tar']}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
