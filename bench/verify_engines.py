"""Verification of a 2018-format checkpoint by engine: img/s on an LFW-sized pack, and the ratios.

The checkpoint is a MobileFaceNet (y1, emb 128) saved as the 2018 code saved it: its graph has
MXNet's ``LeakyReLU(act_type='prelu')`` (``version_act=prelu_native``). Engines, all through
``insightgluon verify``'s code path (``load_embedding_model`` + ``verify_model``, flip on):

* ``graph`` — the graph as saved, the way the 2018 ``verification.py`` ran it (the baseline);
* ``graph-fast`` — the same graph with its PReLU layers rewritten into the fast form;
* ``zoo`` — recognised as ``y1`` and run through the zoo network (fast PReLU), fp32;
* ``zoo-bf16`` — the zoo network in bfloat16 (CPUs with avx512_bf16/AMX);
* ``onnxruntime`` — the ONNX export run by onnxruntime.

Each engine embeds the first ``--images`` images of a 6,000-pair pack (12,000 images; the
full-pack time is extrapolated), runs interleaved ``--repeat`` times, and reports median img/s by
the wall clock and by the steal-free clock (``bench/_clock.py``) and the ratio to ``graph``.

    OMP_NUM_THREADS=2 python bench/verify_engines.py [--images 2048] [--repeat 3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

from insightgluon import runtime

runtime.configure()

import numpy as np  # noqa: E402

from _clock import StealFreeClock  # noqa: E402

ENGINES = {  # name -> load_embedding_model keyword arguments
    "graph": dict(engine="graph", fast_prelu=False),
    "graph-fast": dict(engine="graph"),
    "zoo": dict(engine="zoo"),
    "zoo-bf16": dict(engine="zoo", dtype="bfloat16"),
    "onnxruntime": dict(engine="onnxruntime"),
}


def legacy_checkpoint(root: str) -> str:
    """A y1 checkpoint with 2018 names and native LeakyReLU PReLU layers; returns its prefix."""
    import mxnet as mx

    from insightgluon.networks import get_network
    from insightgluon.train.checkpoint import save_deployable

    net = get_network("y1", emb_size=128, version_act="prelu_native")
    net.initialize(mx.init.Xavier())
    with mx.autograd.record():  # BatchNorm statistics of real-looking activations
        net(mx.nd.random.uniform(0, 255, (8, 3, 112, 112)))
    prefix = os.path.join(root, "model-y1")
    save_deployable(net, prefix, 0)
    return prefix


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048, help="images embedded per run (of 12,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    from verify import make_bin

    from insightgluon.eval.verification import VerificationSet, verify_model
    from insightgluon.engines import load_embedding_model

    clock = StealFreeClock()
    names = args.engines.split(",")
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "lfw.bin")
        make_bin(path, 6000)
        vset = VerificationSet.load(path)
        subset = VerificationSet(vset.name, vset.images[:args.images], vset.issame[:args.images // 2])
        prefix = legacy_checkpoint(root)
        models = {}
        for name in names:
            model = load_embedding_model(prefix, 0, **ENGINES[name])
            model.block.hybridize(static_alloc=True, static_shape=True)
            verify_model(model.block, VerificationSet(vset.name, vset.images[:64], vset.issame[:32]),
                         batch_size=args.batch_size)  # warm-up
            models[name] = model
        wall, free = {n: [] for n in names}, {n: [] for n in names}
        for _ in range(args.repeat):
            for name in names:
                tic, tic_free = time.perf_counter(), clock()
                verify_model(models[name].block, subset, batch_size=args.batch_size)
                wall[name].append(len(subset.images) / (time.perf_counter() - tic))
                free[name].append(len(subset.images) / (clock() - tic_free))
    out = sys.stdout.write
    out(f"verification, flip, batch {args.batch_size}, {len(subset.images)} images per run, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, steal {100 * clock.steal_share():.0f}%\n")
    base_wall, base_free = statistics.median(wall["graph"]), statistics.median(free["graph"])
    for name in names:
        w, f = statistics.median(wall[name]), statistics.median(free[name])
        out(f"{name:12s} {w:7.1f} / {f:7.1f} img/s (wall / steal-free)  x{w / base_wall:.2f} / "
            f"x{f / base_free:.2f} the saved graph  12,000 images ~ {12000 / f / 60:.1f} min  "
            f"[{models[name].describe()}]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
