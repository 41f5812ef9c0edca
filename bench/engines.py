"""Inference engines side by side: img/s at batch 32 and latency at batch 1, per network and engine.

Each network (default y1, r50, r100; emb 512, 112x112, random weights with BatchNorm statistics of
random faces) is saved as a checkpoint and loaded through ``load_embedding_model`` by every engine:
the MXNet zoo network in float32 and bfloat16, onnxruntime (float32), OpenVINO in f32 and bf16.
Engines are timed in turn, ``--repeat`` rounds interleaved, medians by the wall clock and by the
steal-free clock (``bench/_clock.py``); ratios are to onnxruntime, by the steal-free clock. The
last column is the smallest cosine of an engine's embedding to the float32 zoo network's.

    OMP_NUM_THREADS=2 python bench/engines.py [--networks y1,r50,r100] [--repeat 3] [--min-seconds 2]
"""
import argparse
import os
import statistics
import sys
import tempfile

from insightgluon import runtime

runtime.configure()

import numpy as np  # noqa: E402

from _clock import StealFreeClock, medians, timed_rate  # noqa: E402

ENGINES = {  # label -> load_embedding_model keyword arguments
    "MXNet zoo fp32": dict(engine="zoo"),
    "MXNet zoo bf16": dict(engine="zoo", dtype="bfloat16"),
    "onnxruntime fp32": dict(engine="onnxruntime"),
    "OpenVINO f32": dict(engine="openvino"),
    "OpenVINO bf16": dict(engine="openvino", dtype="bfloat16"),
}


def checkpoint(name: str, root: str) -> str:
    """A checkpoint of zoo network ``name`` as ``insightgluon train`` saves it; returns its prefix."""
    import mxnet as mx

    from insightgluon.networks import get_network
    from insightgluon.train.checkpoint import save_deployable

    net = get_network(name, emb_size=512)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    with mx.autograd.train_mode():  # BatchNorm statistics of real-looking activations
        net(mx.nd.random.uniform(0, 255, (4, 3, 112, 112)))
    prefix = os.path.join(root, name)
    save_deployable(net, prefix, 0)
    return prefix


def runner(model, batch: np.ndarray):
    """A no-argument call embedding ``batch`` once and waiting for the result."""
    import mxnet as mx

    if getattr(model.block, "runs_on_host", False):
        return lambda: model.block(batch)
    data = mx.nd.array(batch)
    return lambda: model.block(data).wait_to_read()


def cosine_to(want: np.ndarray, got) -> float:
    got = got.asnumpy() if hasattr(got, "asnumpy") else np.asarray(got)
    got = got.astype(np.float32)
    return float(((got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)).min())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="y1,r50,r100")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    import mxnet as mx

    from insightgluon.engines import load_embedding_model
    from insightgluon.precision import BF16_CPU_FLAGS, cpu_flags

    engines = [e for e in args.engines.split(",") if e]
    if not set(BF16_CPU_FLAGS) & cpu_flags():
        engines = [e for e in engines if "bf16" not in e]
    clock = StealFreeClock()
    rng = np.random.default_rng(0)
    big = rng.uniform(0, 255, (32, 3, 112, 112)).astype(np.float32)
    one = big[:1].copy()
    print(f"threads OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, cpus {os.cpu_count()}")
    for name in args.networks.split(","):
        with tempfile.TemporaryDirectory() as root:
            prefix = checkpoint(name, root)
            models = {label: load_embedding_model(prefix, 0, **ENGINES[label]) for label in engines}
        for model in models.values():
            model.block.hybridize(static_alloc=True, static_shape=True)
        want = models[engines[0]].block(mx.nd.array(big[:4])).asnumpy()
        cosine = {label: cosine_to(want, m.block(big[:4] if getattr(m.block, "runs_on_host", False)
                                                  else mx.nd.array(big[:4]))) for label, m in models.items()}
        rates = {label: {32: [], 1: []} for label in engines}
        for _ in range(args.repeat):
            for label in engines:  # interleaved: every engine once per round
                for size, batch in ((32, big), (1, one)):
                    rates[label][size].append(timed_rate(runner(models[label], batch), size, args.min_seconds,
                                                         clock))
        base = medians(rates["onnxruntime fp32"][32])[1] if "onnxruntime fp32" in rates else None
        print(f"\n{name}: batch 32 img/s (wall / steal-free median of {args.repeat}), vs onnxruntime; "
              "batch 1 latency ms (steal-free median); min cosine to MXNet fp32")
        print("| engine | img/s b32 | vs onnxruntime | latency b1 ms | min cosine |")
        print("|---|---|---|---|---|")
        for label in engines:
            wall, free = medians(rates[label][32])
            latency = 1000.0 / statistics.median(f for _, f in rates[label][1])
            ratio = f"{free / base:.2f}x" if base else "-"
            print(f"| {label} | {wall:.1f} / {free:.1f} | {ratio} | {latency:.1f} | {cosine[label]:.6f} |")
        sys.stdout.flush()
    print(f"\nsteal {100 * clock.steal_share():.1f}% of the wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
