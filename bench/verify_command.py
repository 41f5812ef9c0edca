"""Verifying a 2018 checkpoint, the whole command: ``insightgluon verify`` against the 2018 procedure.

The checkpoint is a MobileFaceNet (y1, emb 128) saved as the 2018 code saved it (MXNet's
``LeakyReLU(prelu)`` in its graph); the pack holds two LFW folds, 1,200 pairs = 2,400 synthetic
112x112 faces (``insightgluon.data.synthetic``). Each command runs as its own process from start
to exit, ``--repeat`` rounds interleaved, both with ``OMP_NUM_THREADS`` set to the cores:

* ``2018``: ``bench/_legacy_verify.py``, the 2018 ``verification.py`` procedure (Module, imdecode,
  the graph as saved, the 2018 evaluation);
* ``insightgluon verify`` with its default engine (``auto``: OpenVINO f32 here), with ``--dtype
  bf16``, and with ``--engine mxnet`` and ``--engine onnxruntime`` for comparison.

Prints median seconds (wall and steal-free), the speed-up over 2018 by the steal-free clock, and
each command's ``Accuracy-Flip`` (2018's to 5 decimals). Then the stages of the default command,
timed in this process: start-up imports, ``.bin`` decoding, model loading, embedding, evaluation.

    python bench/verify_command.py [--repeat 3] [--pairs 1200]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from _clock import StealFreeClock

HERE = os.path.dirname(os.path.abspath(__file__))


def make_pack(path: str, pairs: int) -> None:
    """A ``.bin`` of ``pairs`` synthetic pairs, half genuine, LFW-like poses."""
    from insightgluon.data.bin import save_bin
    from insightgluon.data.synthetic import pair_plan, render_pair

    bins, same = [], []
    for index, (ga, gb, genuine) in enumerate(pair_plan(pairs, 0, 200, np.random.default_rng(0))):
        bins += render_pair(7, 0, index, ga, gb, 0.0, 0.0, 0.0)
        same.append(genuine)
    save_bin(path, bins, same)


def commands(prefix: str, data_dir: str) -> dict:
    ours = [sys.executable, "-m", "insightgluon", "verify", "--model", f"{prefix},0", "--data-dir", data_dir,
            "--target", "lfw"]
    return {
        "2018 verification.py procedure": [sys.executable, os.path.join(HERE, "_legacy_verify.py"), "--model",
                                           f"{prefix},0", "--data-dir", data_dir, "--target", "lfw"],
        "insightgluon verify (auto, fp32)": ours,
        "insightgluon verify --dtype bf16": ours + ["--dtype", "bf16"],
        "insightgluon verify --engine mxnet": ours + ["--engine", "mxnet"],
        "insightgluon verify --engine onnxruntime": ours + ["--engine", "onnxruntime"],
    }


def run(cmd, clock: StealFreeClock):
    wall, free = time.perf_counter(), clock()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    found = re.search(r"Accuracy-Flip: ([0-9.]+)", done.stdout)
    return time.perf_counter() - wall, clock() - free, found.group(1) if found else "?"


def stages(prefix: str, data_dir: str) -> list:
    """Seconds of each stage of ``insightgluon verify`` (default engine), in one fresh process."""
    code = f"""
import time, json
t0 = time.perf_counter()
from insightgluon import runtime
runtime.configure()
import mxnet
from insightgluon.engines import load_embedding_model
from insightgluon.eval.verification import VerificationSet, evaluate
from insightgluon.eval.embed import Embedder
t1 = time.perf_counter()
vset = VerificationSet.load({os.path.join(data_dir, 'lfw.bin')!r}, image_size=(112, 112))
t2 = time.perf_counter()
model = load_embedding_model({prefix!r}, 0, image_hw=(112, 112))
t3 = time.perf_counter()
emb, xnorm = Embedder(model.block, None, 32, flip=True).embed(vset.images, progress=False)
t4 = time.perf_counter()
evaluate(emb, vset.issame, nfolds=10)
t5 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, model.describe()]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1200)
    parser.add_argument("--only", default="", help="comma-separated command labels to run (default all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    from verify_engines import legacy_checkpoint

    clock = StealFreeClock()
    with tempfile.TemporaryDirectory() as root:
        prefix = legacy_checkpoint(root)
        make_pack(os.path.join(root, "lfw.bin"), args.pairs)
        cmds = commands(prefix, root)
        if args.only:
            keep = [k for k in cmds if any(word in k for word in args.only.split(","))]
            cmds = {k: cmds[k] for k in cmds if k in keep or k.startswith("2018")}
        times = {label: [] for label in cmds}
        for _ in range(args.repeat):
            for label, cmd in cmds.items():
                times[label].append(run(cmd, clock))
        parts = [stages(prefix, root) for _ in range(args.repeat)]
    base = statistics.median(t[1] for t in times["2018 verification.py procedure"])
    print(f"{args.pairs} pairs ({2 * args.pairs} images, flip), OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"medians of {args.repeat}, steal {100 * clock.steal_share():.1f}%")
    print("| command | seconds (wall / steal-free) | vs 2018 | Accuracy-Flip |")
    print("|---|---|---|---|")
    for label, values in times.items():
        wall, free = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        accuracy = sorted({v[2] for v in values})
        print(f"| {label} | {wall:.1f} / {free:.1f} | {base / free:.2f}x | {', '.join(accuracy)} |")
    names = ["start-up imports", ".bin decoding", "model loading", "embedding (flip)", "evaluation"]
    print(f"\nstages of the default command ({parts[0][5]}), seconds, median of {args.repeat}:")
    for k, name in enumerate(names):
        print(f"  {name}: {statistics.median(p[k] for p in parts):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
