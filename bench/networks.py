"""Forward and forward+backward throughput: hybridized Gluon networks vs the legacy symbol path.

For each network three engines run the same architecture and batch:
  module   the 2018 way: ``mx.mod.Module`` on the symbol with ``LeakyReLU(act_type='prelu')``
  gluon    our ``HybridBlock`` (static_alloc/static_shape) with that same native PReLU
  fast     our default: the same block with the fast PReLU
Runs are interleaved and repeated, each in its own process (three r50 graphs at
batch 32 in one process exceed 24 GiB); the median img/s by the wall clock and by
the steal-free clock (``bench/_clock.py``), and the steal-free ratios to
``module``, are printed. Usage::

    OMP_NUM_THREADS=2 python bench/networks.py [--nets y1,r18,r50] [--batch-size 32]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import mxnet as mx  # noqa: E402

from _clock import StealFreeClock  # noqa: E402
from insightgluon.networks import get_network  # noqa: E402

OPTIONS = {"y1": dict(emb_size=128), "r18": dict(emb_size=512), "r50": dict(emb_size=512)}


def _module_engine(name, batch):
    net = get_network(name, version_act="prelu_native", **OPTIONS.get(name, {}))
    sym = net(mx.sym.var("data"))
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind([("data", batch.shape)], for_training=True)
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    data = mx.io.DataBatch([batch])
    grad = [mx.nd.ones(mod.output_shapes[0][1])]

    def forward():
        mod.forward(data, is_train=False)
        mod.get_outputs()[0].wait_to_read()

    def train():
        mod.forward(data, is_train=True)
        mod.backward(grad)
        for g in mod._exec_group.grad_arrays[0]:
            g.wait_to_read()

    return forward, train


def _gluon_engine(name, batch, act):
    net = get_network(name, version_act=act, **OPTIONS.get(name, {}))
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    net.hybridize(static_alloc=True, static_shape=True)
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]

    def forward():
        net(batch).wait_to_read()

    def train():
        with mx.autograd.record():
            out = net(batch)
        out.backward(mx.nd.ones_like(out))
        for p in params:
            p.grad().wait_to_read()

    return forward, train


def _rate(step, batch_size, iters, clock):
    """(wall img/s, steal-free img/s) over ``iters`` steps after one warm-up step."""
    step()  # warm-up (graph build, memory planning)
    wall, free = time.perf_counter(), clock()
    for _ in range(iters):
        step()
    return batch_size * iters / (time.perf_counter() - wall), batch_size * iters / (clock() - free)


ENGINES = ("module", "gluon", "fast")


def measure(engine, name, batch_size, iters):
    """{"fwd": (wall, free), "train": (wall, free)} img/s of one engine, in this process."""
    batch = mx.nd.random.uniform(0, 255, (batch_size, 3, 112, 112))
    build = {"module": lambda: _module_engine(name, batch),
             "gluon": lambda: _gluon_engine(name, batch, "prelu_native"),
             "fast": lambda: _gluon_engine(name, batch, "prelu")}[engine]
    forward, train = build()
    clock = StealFreeClock()
    return {"fwd": _rate(forward, batch_size, iters, clock), "train": _rate(train, batch_size, iters, clock)}


def run_one(engine, name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--one", engine, "--nets", name,
           "--batch-size", str(args.batch_size), "--iters", str(args.iters)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="y1,r18,r50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine")
    parser.add_argument("--one", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        sys.stdout.write(json.dumps(measure(args.one, args.nets, args.batch_size, args.iters)) + "\n")
        return 0
    clock = StealFreeClock()
    sys.stdout.write(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} batch={args.batch_size} "
                     f"iters={args.iters} repeats={args.repeats}\n")
    for name in args.nets.split(","):
        rates = {(e, k): [] for e in ENGINES for k in ("fwd", "train")}
        for _ in range(args.repeats):
            for engine in ENGINES:
                for kind, rate in run_one(engine, name, args).items():
                    rates[engine, kind].append(rate)
        for kind in ("fwd", "train"):
            base = statistics.median(free for _, free in rates["module", kind])
            for engine in ENGINES:
                wall = statistics.median(w for w, _ in rates[engine, kind])
                free = statistics.median(f for _, f in rates[engine, kind])
                sys.stdout.write(f"{name:<4} {kind:<5} {engine:<6} median {wall:7.1f} img/s wall, "
                                 f"{free:7.1f} steal-free  x{free / base:.2f}\n")
        sys.stdout.flush()
    sys.stdout.write(f"steal: {100 * clock.steal_share():.0f}% of the wall time\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
