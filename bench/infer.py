"""Inference speed: MXNet (hybridized, static graph) vs onnxruntime on the same exported model.

    python bench/infer.py [--networks y1,r50] [--batches 1,32] [--repeats 5] [--threads 0]

Each network is built with random weights, saved as a checkpoint, exported with
``insightgluon.export.export_onnx`` (parity-checked) and timed in both engines.
Runs are interleaved (MXNet, onnxruntime, MXNet, ...) because this machine has
slow periods; min and median img/s over the repeats are printed, with the
ratio of the medians.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from insightgluon import runtime  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="y1,r50")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--min-seconds", dest="min_seconds", type=float, default=2.0,
                        help="time each run for at least this long")
    return parser.parse_args(argv)


def build_checkpoint(name, prefix):
    import mxnet as mx

    from insightgluon.export.deploy import save_checkpoint
    from insightgluon.networks import get_network

    net = get_network(name, emb_size=512)
    net.initialize()
    net(mx.nd.zeros((1, 3, 112, 112)))
    params = {key: mx.nd.array(p.data().asnumpy()) for key, p in net.collect_params().items()}
    save_checkpoint(prefix, 1, net(mx.sym.var("data")), params)


def timed(run, batch, min_seconds):
    """img/s of ``run()`` (one batch) after a warm-up call."""
    run()
    count, start = 0, time.perf_counter()
    while True:
        run()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count * batch / elapsed


def engines(prefix, onnx_path, threads):
    import mxnet as mx
    import onnxruntime as ort

    from insightgluon.model_io import load_symbol_block

    block = load_symbol_block(prefix, 1)
    block.hybridize(static_alloc=True, static_shape=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    def mxnet_run(x):
        data = mx.nd.array(x)
        return lambda: block(data).wait_to_read()

    def ort_run(x):
        return lambda: session.run(None, {"data": x})

    return {"mxnet": mxnet_run, "onnxruntime": ort_run}


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    runtime.configure(threads)
    import logging

    import numpy as np

    from insightgluon.export import export_onnx

    logging.basicConfig(level=logging.WARNING)
    print(f"threads {threads}, repeats {args.repeats}, >= {args.min_seconds:g} s per run")
    print(f"{'network':8s} {'batch':>5s} {'engine':12s} {'min img/s':>10s} {'median':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            prefix, onnx_path = os.path.join(tmp, name), os.path.join(tmp, f"{name}.onnx")
            build_checkpoint(name, prefix)
            export_onnx(prefix, 1, onnx_path)
            runners = engines(prefix, onnx_path, threads)
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).uniform(0, 255, (batch, 3, 112, 112)).astype(np.float32)
                runs = {engine: make(x) for engine, make in runners.items()}
                speeds = {engine: [] for engine in runs}
                for _ in range(args.repeats):
                    for engine, run in runs.items():
                        speeds[engine].append(timed(run, batch, args.min_seconds))
                for engine, values in speeds.items():
                    print(f"{name:8s} {batch:5d} {engine:12s} {min(values):10.1f} "
                          f"{np.median(values):8.1f}")
                ratio = np.median(speeds["onnxruntime"]) / np.median(speeds["mxnet"])
                print(f"{name:8s} {batch:5d} onnxruntime/mxnet median ratio {ratio:.2f}x")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
