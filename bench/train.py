"""Training throughput: our Gluon driver vs a legacy-style ``mx.mod.Module`` symbol graph.

For each network (y1, r50 by default) at batch 32, ArcFace (s=64, m=0.5),
112x112, on the same small .rec dataset in the same process:

* **driver** — ``insightgluon.train.train`` end to end (DataLoader decoding and
  augmenting in a worker, hybridized static graph, fast PReLU), img/s per
  window of 2 batches after warm-up;
* **legacy** — the 2018 structure: the symbol graph with MXNet's native
  ``LeakyReLU(act_type='prelu')``, the ArcFace target-logit formula as symbols,
  ``SoftmaxOutput(normalization='valid')``, ``Module.forward_backward`` +
  ``update`` on pre-decoded batches (so its data loading costs nothing).

Runs alternate (driver, legacy, driver, legacy ...) because this VM has slow
periods, each in its own process (a static-allocation graph keeps its memory
until the process ends); the script prints min and median img/s, their ratio,
and achieved GFLOP/s (3 x forward FLOPs per image) against the measured sgemm
peak.

    python bench/train.py [--networks y1,r50] [--repeats 2] [--batches 6]
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


def driver_speeds(network: str, data_dir: str, batches: int):
    from insightgluon.config import TrainConfig
    from insightgluon.train import train

    cfg = TrainConfig(data_dir=data_dir, prefix=os.path.join(data_dir, "m"), network=network, loss_type="4",
                      per_batch_size=BATCH, max_steps=2 + batches, frequent=2, verbose=10 ** 9,
                      dry_run=True, data_workers=1, target="", lr=0.01).resolve()
    result = train(cfg)
    return [h["speed"] for h in result.history[1:]]


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


def legacy_speeds(network: str, data_dir: str, batches: int):
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
    speeds, tic = [], None
    for step in range(2 + batches):
        mod.forward_backward(batch_list[step % 2])
        mod.update()
        mod.get_outputs()[1].asnumpy()  # the legacy metric read the output every batch
        if step == 1 or (step > 1 and step % 2 == 1):
            if tic is not None:
                speeds.append(2 * BATCH / (time.time() - tic))
            tic = time.time()
    return speeds


def sgemm_peak(n: int = 2048, reps: int = 5) -> float:
    import mxnet as mx

    a, b = mx.nd.random.uniform(shape=(n, n)), mx.nd.random.uniform(shape=(n, n))
    mx.nd.dot(a, b).wait_to_read()
    best = float("inf")
    for _ in range(reps):
        tic = time.time()
        mx.nd.dot(a, b).wait_to_read()
        best = min(best, time.time() - tic)
    return 2 * n ** 3 / best / 1e9


def run_one(kind: str, network: str, data_dir: str, batches: int) -> list:
    """Measure one (kind, network) in a fresh process; returns its img/s figures."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, "--networks", network,
           "--data", data_dir, "--batches", str(batches)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="y1,r50")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per run (after 2 warm-up)")
    parser.add_argument("--one", choices=("driver", "legacy"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.one:
        speeds = {"driver": driver_speeds, "legacy": legacy_speeds}[args.one](args.networks, args.data,
                                                                            args.batches)
        sys.stdout.write(json.dumps(speeds) + "\n")
        return 0
    from insightgluon.networks.summary import summarize

    peak = sgemm_peak()
    out = sys.stdout.write
    out(f"threads OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}  sgemm peak {peak:.0f} GFLOP/s\n")
    with tempfile.TemporaryDirectory() as root:
        data_dir = make_data(root)
        for network in args.networks.split(","):
            gflop = 3 * summarize(network, emb_size=EMB).mflops / 1e3  # forward + backward per image
            ours, legacy = [], []
            for _ in range(args.repeats):
                ours += run_one("driver", network, data_dir, args.batches)
                legacy += run_one("legacy", network, data_dir, args.batches)
            om, lm = statistics.median(ours), statistics.median(legacy)
            out(f"{network}: batch {BATCH} ArcFace  driver img/s min {min(ours):.2f} median {om:.2f}  |  "
                f"legacy Module min {min(legacy):.2f} median {lm:.2f}  |  ratio (median) {om / lm:.2f}x  "
                f"(min) {min(ours) / min(legacy):.2f}x\n")
            out(f"{network}: {gflop:.2f} GFLOP per training image -> driver {om * gflop:.1f} GFLOP/s "
                f"({100 * om * gflop / peak:.0f}% of sgemm peak), legacy {lm * gflop:.1f} GFLOP/s\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
