"""Training throughput: our Gluon driver in fp32 and bf16 vs a legacy-style ``mx.mod.Module`` graph.

For each network (y1, r50 by default) at batch 32, ArcFace (s=64, m=0.5),
112x112, on the same small .rec dataset in the same process:

* **driver** — ``insightgluon.train.train`` end to end (DataLoader decoding and
  augmenting in a worker, hybridized static graph, fast PReLU), img/s per
  window of 2 batches after warm-up, once per ``--dtypes`` value (``bf16``:
  bfloat16 compute with fp32 weights, on CPUs with avx512_bf16/AMX);
* **legacy** — the 2018 structure: the symbol graph with MXNet's native
  ``LeakyReLU(act_type='prelu')``, the ArcFace target-logit formula as symbols,
  ``SoftmaxOutput(normalization='valid')``, ``Module.forward_backward`` +
  ``update`` on pre-decoded batches (so its data loading costs nothing).

Runs alternate (driver fp32, driver bf16, legacy, driver fp32, ...) because this VM has slow
periods, each in its own process (a static-allocation graph keeps its memory
until the process ends); the script prints median img/s by the wall clock and
by the steal-free clock (``bench/_clock.py``), their ratios, and achieved
GFLOP/s (3 x forward FLOPs per image) against the measured sgemm peak.

    python bench/train.py [--networks y1,r50] [--dtypes fp32,bf16] [--repeats 2] [--batches 6]
"""
import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from insightgluon import runtime

runtime.configure()

import numpy as np  # noqa: E402

from _clock import StealFreeClock  # noqa: E402

S, M, CLASSES, EMB, SIZE, BATCH = 64.0, 0.5, 1000, 512, 112, 32


def make_data(root: str) -> str:
    """A .rec of CLASSES identities x 2 noisy 112x112 JPEGs."""
    from insightgluon.data.image import encode_jpeg
    from insightgluon.data.recordio import write_face_dataset

    rng = np.random.default_rng(0)

    def samples():
        for k in range(CLASSES):
            base = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            for _ in range(2):
                noise = rng.integers(-20, 20, base.shape)
                yield k, encode_jpeg(np.clip(base + noise, 0, 255).astype(np.uint8), quality=90)
    out = os.path.join(root, "data")
    write_face_dataset(out, samples(), image_size=(SIZE, SIZE))
    return out


def driver_speeds(network: str, data_dir: str, batches: int, clock, dtype: str = "fp32"):
    """(wall, steal-free) img/s per window of 2 batches, after 2 warm-up batches."""
    from insightgluon.config import TrainConfig
    from insightgluon.train import train
    from insightgluon.train.callbacks import SpeedMonitor

    stamps = []
    update = SpeedMonitor.update

    def timed_update(self, *args, **kwargs):  # the loop calls this once per finished batch
        stamps.append((time.perf_counter(), clock()))
        return update(self, *args, **kwargs)

    SpeedMonitor.update = timed_update
    cfg = TrainConfig(data_dir=data_dir, prefix=os.path.join(data_dir, "m"), network=network, loss_type="4",
                      per_batch_size=BATCH, max_steps=2 + batches, frequent=2, verbose=10 ** 9,
                      dry_run=True, data_workers=1, target="", lr=0.01, dtype=dtype).resolve()
    train(cfg)
    return _windows(stamps[1:])


def _windows(stamps):
    """img/s by both clocks for each 2-batch window between ``stamps`` (one per batch end)."""
    return [(2 * BATCH / (b[0] - a[0]), 2 * BATCH / (b[1] - a[1])) for a, b in zip(stamps[::2], stamps[2::2])]


def legacy_symbol(network: str):
    import mxnet as mx

    from insightgluon.networks import get_network

    data, label = mx.sym.var("data"), mx.sym.var("softmax_label")
    emb = get_network(network, emb_size=EMB, version_act="prelu_native")(data)
    weight = mx.sym.var("fc7_weight", shape=(CLASSES, EMB))
    wn = mx.sym.L2Normalization(weight, mode="instance")
    xn = mx.sym.L2Normalization(emb, mode="instance") * S
    fc7 = mx.sym.FullyConnected(xn, wn, no_bias=True, num_hidden=CLASSES, name="fc7")
    zy = mx.sym.pick(fc7, label, axis=1)
    cos_t = zy / S
    sin_t = mx.sym.sqrt(1.0 - cos_t * cos_t)
    new = (cos_t * math.cos(M) - sin_t * math.sin(M)) * S
    cond = mx.sym.Activation(cos_t - math.cos(math.pi - M), act_type="relu")
    body = mx.sym.where(cond > 0, new, zy - S * math.sin(math.pi - M) * M)
    diff = mx.sym.expand_dims(body - zy, 1)
    fc7 = fc7 + mx.sym.broadcast_mul(mx.sym.one_hot(label, depth=CLASSES), diff)
    out = mx.sym.SoftmaxOutput(fc7, label, normalization="valid", name="softmax")
    return mx.sym.Group([mx.sym.BlockGrad(emb), out])


def legacy_speeds(network: str, data_dir: str, batches: int, clock):
    import mxnet as mx

    from insightgluon.data.recordio import FaceRecordDataset

    ds = FaceRecordDataset(data_dir)
    images = np.stack([ds[i][0] for i in range(BATCH * 2)]).transpose(0, 3, 1, 2).astype(np.float32)
    labels = ds.labels[: BATCH * 2].astype(np.float32)
    mod = mx.mod.Module(legacy_symbol(network), context=mx.cpu())
    mod.bind(data_shapes=[("data", (BATCH, 3, SIZE, SIZE))], label_shapes=[("softmax_label", (BATCH,))])
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.01, "momentum": 0.9, "wd": 5e-4})
    batch_list = [mx.io.DataBatch([mx.nd.array(images[i:i + BATCH])], [mx.nd.array(labels[i:i + BATCH])])
                  for i in (0, BATCH)]
    stamps = []
    for step in range(2 + batches):
        mod.forward_backward(batch_list[step % 2])
        mod.update()
        mod.get_outputs()[1].asnumpy()  # the legacy metric read the output every batch
        stamps.append((time.perf_counter(), clock()))
    return _windows(stamps[1:])


def sgemm_peak(n: int = 2048, reps: int = 10) -> float:
    """Best steal-free GFLOP/s of an n x n float32 matrix product through MKLDNN.

    ``FullyConnected`` runs on MKLDNN's sgemm, the library the convolutions use;
    ``mx.nd.dot`` goes through another BLAS path here and reaches a fifth of it.
    """
    import mxnet as mx

    clock = StealFreeClock()
    a, b = mx.nd.random.uniform(shape=(n, n)), mx.nd.random.uniform(shape=(n, n))
    mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=n).wait_to_read()
    best = float("inf")
    for _ in range(reps):
        tic = clock()
        mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=n).wait_to_read()
        best = min(best, clock() - tic)
    return 2 * n ** 3 / best / 1e9


def _medians(windows):
    return statistics.median(w for w, _ in windows), statistics.median(f for _, f in windows)


def run_one(kind: str, network: str, data_dir: str, batches: int, dtype: str = "fp32") -> list:
    """Measure one (kind, network, dtype) in a fresh process; returns its img/s figures."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, "--networks", network,
           "--data", data_dir, "--batches", str(batches), "--dtypes", dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="y1,r50")
    parser.add_argument("--dtypes", default="fp32,bf16", help="compute precisions of the driver")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per run (after 2 warm-up)")
    parser.add_argument("--one", choices=("driver", "legacy"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.one == "driver":
        speeds = driver_speeds(args.networks, args.data, args.batches, StealFreeClock(), args.dtypes)
    elif args.one == "legacy":
        speeds = legacy_speeds(args.networks, args.data, args.batches, StealFreeClock())
    if args.one:
        sys.stdout.write(json.dumps(speeds) + "\n")
        return 0
    dtypes = args.dtypes.split(",")
    from insightgluon.networks.summary import summarize

    peak = sgemm_peak()
    clock = StealFreeClock()
    out = sys.stdout.write
    out(f"threads OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n")
    achieved = []
    with tempfile.TemporaryDirectory() as root:
        data_dir = make_data(root)
        for network in args.networks.split(","):
            gflop = 3 * summarize(network, emb_size=EMB).mflops / 1e3  # forward + backward per image
            ours, legacy = {d: [] for d in dtypes}, []
            for _ in range(args.repeats):
                for dtype in dtypes:
                    ours[dtype] += run_one("driver", network, data_dir, args.batches, dtype)
                legacy += run_one("legacy", network, data_dir, args.batches)
            lw, lf = _medians(legacy)
            figures = {d: _medians(w) for d, w in ours.items()}
            for dtype, (ow, of) in figures.items():
                out(f"{network}: batch {BATCH} ArcFace, median img/s wall / steal-free: driver {dtype} {ow:.2f} / "
                    f"{of:.2f}  |  legacy Module {lw:.2f} / {lf:.2f}  |  ratio {ow / lw:.2f}x / {of / lf:.2f}x\n")
            for dtype in dtypes[1:]:
                (bw, bf), (fw, ff) = figures[dtype], figures[dtypes[0]]
                out(f"{network}: {dtype} over {dtypes[0]}: {bw / fw:.2f}x wall / {bf / ff:.2f}x steal-free\n")
            sys.stdout.flush()
            achieved.append((network, gflop, figures[dtypes[0]][1] * gflop, lf * gflop))
    # The peak is measured before and after the runs: contention can spoil either one.
    peak = max(peak, sgemm_peak())
    out(f"sgemm peak (2048^2 MKLDNN FullyConnected, best steal-free of both measurements) {peak:.0f} GFLOP/s\n")
    for network, gflop, ours, legacy in achieved:
        out(f"{network}: {gflop:.2f} GFLOP per training image -> steal-free driver {ours:.1f} GFLOP/s "
            f"({100 * ours / peak:.0f}% of sgemm peak), legacy {legacy:.1f} GFLOP/s\n")
    out(f"steal: {100 * clock.steal_share():.0f}% of the wall time\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
