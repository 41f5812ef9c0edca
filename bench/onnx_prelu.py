"""onnxruntime speed of PReLU as one ONNX ``PRelu`` vs our fast PReLU's decomposition.

    OMP_NUM_THREADS=2 python bench/onnx_prelu.py [--networks y1,r50] [--batches 1,32] [--repeats 5]

Each network gets random weights (Xavier, so activations stay far from subnormal
numbers) and is exported twice with ``insightgluon.export.export_onnx``, both
parity-checked against MXNet: built with the fast PReLU (the default; ONNX gets
``Relu``, two 1x1 depthwise ``Conv``, ``Sum`` and ``Add`` per layer) and, with the
same arrays, with ``version_act='prelu_native'`` (one ``PRelu`` per layer). Runs
alternate between the two sessions; the median img/s by the wall clock and by the
steal-free clock (``bench/_clock.py``) and the steal-free ratio are printed.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from insightgluon import runtime  # noqa: E402

VARIANTS = {"decomposed": "prelu", "PRelu": "prelu_native"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="y1,r50")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per variant")
    parser.add_argument("--min-seconds", dest="min_seconds", type=float, default=2.0,
                        help="time each run for at least this long")
    return parser.parse_args(argv)


def export_variants(name, folder):
    """``{variant: onnx path}``: one network's weights exported with each PReLU form."""
    import mxnet as mx

    from insightgluon.export import export_onnx
    from insightgluon.export.deploy import save_checkpoint
    from insightgluon.networks import get_network

    params, paths = None, {}
    for variant, act in VARIANTS.items():
        net = get_network(name, emb_size=512, version_act=act)
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
        net(mx.nd.zeros((1, 3, 112, 112)))
        if params is None:
            params = {key: mx.nd.array(p.data().asnumpy()) for key, p in net.collect_params().items()}
        prefix = os.path.join(folder, f"{name}-{variant}")
        save_checkpoint(prefix, 1, net(mx.sym.var("data")), params)
        paths[variant] = prefix + ".onnx"
        export_onnx(prefix, 1, paths[variant])
    return paths


def session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main(argv=None):
    args = parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1
    runtime.configure(threads)
    import logging

    import numpy as np

    from _clock import StealFreeClock, medians, timed_rate

    logging.basicConfig(level=logging.WARNING)
    clock = StealFreeClock()
    print(f"onnxruntime threads {threads}, repeats {args.repeats}, >= {args.min_seconds:g} s per run")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            sessions = {v: session(p, threads) for v, p in export_variants(name, tmp).items()}
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
                speeds = {variant: [] for variant in sessions}
                for _ in range(args.repeats):
                    for variant, sess in sessions.items():
                        speeds[variant].append(timed_rate(lambda: sess.run(None, {"data": x}), batch,
                                                          args.min_seconds, clock))
                rates = {variant: medians(values) for variant, values in speeds.items()}
                for variant, (wall, free) in rates.items():
                    print(f"{name:4s} batch {batch:3d} {variant:10s} median {wall:7.1f} img/s wall, "
                          f"{free:7.1f} steal-free")
                ratio = rates["PRelu"][1] / rates["decomposed"][1]
                print(f"{name:4s} batch {batch:3d} PRelu / decomposed x{ratio:.2f}")
                sys.stdout.flush()
    print(f"steal: {100 * clock.steal_share():.0f}% of the wall time")


if __name__ == "__main__":
    main()
