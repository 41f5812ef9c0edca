"""Forward speed of a 2018-style checkpoint graph as saved vs with its PReLU layers rewritten.

    OMP_NUM_THREADS=2 python bench/graph_prelu.py [--networks y1,r50] [--batch-size 32] [--repeats 5]

Each network is built with MXNet's ``LeakyReLU(act_type='prelu')`` (``version_act=
'prelu_native'``, the layers of a 2018 graph), given random weights, saved as a
checkpoint and loaded back with ``load_embedding_model(engine="graph")`` twice:
``fast_prelu=False`` (the graph as saved) and ``fast_prelu=True`` (every PReLU in
the fast form, :func:`insightgluon.export.graph.fast_prelu_symbol`). Both are
hybridized with static_alloc/static_shape, checked to give the same embedding,
and timed in alternation in this one process; the median img/s by the wall clock
and by the steal-free clock (``bench/_clock.py``) and the steal-free ratio are printed.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from insightgluon import runtime  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="y1")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per graph")
    parser.add_argument("--min-seconds", dest="min_seconds", type=float, default=3.0,
                        help="time each run for at least this long")
    return parser.parse_args(argv)


def save_native_checkpoint(name, prefix):
    """A checkpoint whose graph computes PReLU with LeakyReLU, as 2018 graphs do."""
    import mxnet as mx

    from insightgluon.export.deploy import save_checkpoint
    from insightgluon.networks import get_network

    net = get_network(name, emb_size=128 if name == "y1" else 512, version_act="prelu_native")
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net(mx.nd.zeros((1, 3, 112, 112)))
    params = {key: mx.nd.array(p.data().asnumpy()) for key, p in net.collect_params().items()}
    save_checkpoint(prefix, 1, net(mx.sym.var("data")), params)


def main(argv=None):
    args = parse_args(argv)
    runtime.configure(int(os.environ.get("OMP_NUM_THREADS", 0)))
    import logging

    import mxnet as mx
    import numpy as np

    from _clock import StealFreeClock, medians, timed_rate
    from insightgluon.engines import load_embedding_model

    logging.basicConfig(level=logging.WARNING)
    clock = StealFreeClock()
    print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} batch={args.batch_size} "
          f"repeats={args.repeats}, >= {args.min_seconds:g} s per run")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            prefix = os.path.join(tmp, name)
            save_native_checkpoint(name, prefix)
            blocks = {label: load_embedding_model(prefix, 1, engine="graph", fast_prelu=fast).block
                      for label, fast in (("as saved", False), ("fast PReLU", True))}
            batch = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (args.batch_size, 3, 112, 112)))
            outputs = []
            for block in blocks.values():
                block.hybridize(static_alloc=True, static_shape=True)
                outputs.append(block(batch).asnumpy())
            assert np.array_equal(*outputs), "the rewritten graph computes something else"
            speeds = {label: [] for label in blocks}
            for _ in range(args.repeats):
                for label, block in blocks.items():
                    speeds[label].append(timed_rate(lambda: block(batch).wait_to_read(), args.batch_size,
                                                    args.min_seconds, clock))
            rates = {label: medians(values) for label, values in speeds.items()}
            for label, (wall, free) in rates.items():
                print(f"{name:4s} forward {label:10s} median {wall:7.1f} img/s wall, {free:7.1f} steal-free")
            ratio = rates["fast PReLU"][1] / rates["as saved"][1]
            print(f"{name:4s} forward fast PReLU / as saved x{ratio:.2f}")
            sys.stdout.flush()
    print(f"steal: {100 * clock.steal_share():.0f}% of the wall time")


if __name__ == "__main__":
    main()
