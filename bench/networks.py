"""Forward and forward+backward throughput: hybridized Gluon networks vs the legacy symbol path.

For each network three engines run the same architecture and batch:
  module   the 2018 way: ``mx.mod.Module`` on the symbol with ``LeakyReLU(act_type='prelu')``
  gluon    our ``HybridBlock`` (static_alloc/static_shape) with that same native PReLU
  fast     our default: the same block with the fast PReLU
Runs are interleaved and repeated; the minimum and median img/s and the ratios
to ``module`` are printed. Usage::

    OMP_NUM_THREADS=2 python bench/networks.py [--nets y1,r18,r50] [--batch-size 32]
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import mxnet as mx  # noqa: E402

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


def _rate(step, batch_size, iters):
    step()  # warm-up (graph build, memory planning)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return batch_size * iters / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="y1,r18,r50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine")
    args = parser.parse_args(argv)
    batch = mx.nd.random.uniform(0, 255, (args.batch_size, 3, 112, 112))
    sys.stdout.write(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} batch={args.batch_size} "
                     f"iters={args.iters} repeats={args.repeats}\n")
    for name in args.nets.split(","):
        engines = {"module": _module_engine(name, batch),
                   "gluon": _gluon_engine(name, batch, "prelu_native"),
                   "fast": _gluon_engine(name, batch, "prelu")}
        rates = {(e, k): [] for e in engines for k in ("fwd", "train")}
        for _ in range(args.repeats):
            for engine, (forward, train) in engines.items():
                rates[engine, "fwd"].append(_rate(forward, args.batch_size, args.iters))
                rates[engine, "train"].append(_rate(train, args.batch_size, args.iters))
        for kind in ("fwd", "train"):
            base = statistics.median(rates["module", kind])
            for engine in engines:
                r = rates[engine, kind]
                sys.stdout.write(f"{name:<4} {kind:<5} {engine:<6} min {min(r):7.1f}  median "
                                 f"{statistics.median(r):7.1f} img/s  x{statistics.median(r) / base:.2f}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
