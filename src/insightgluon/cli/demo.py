"""``insightgluon demo`` (``make demo``): synthetic faces -> ArcFace training -> verification, on CPUs.

Writes the embedded synthetic dataset (if it is not there yet), trains a slim
network with ArcFace for a few minutes and verifies it on the synthetic
``.bin`` pair sets every few hundred batches, so the log shows the
verification accuracy rising from chance (0.5) to 0.95 or more. Everything
goes under ``--output`` (default ``demo_output/``).
"""
import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from insightgluon.outputs import output_dir

logger = logging.getLogger("insightgluon.demo")

# The demo run, tuned on this 2-core machine: a slim r18 (width x 0.25) on 56x56 inputs learns the
# synthetic identities at ~190 img/s; 1500 batches of 32 (about 10 epochs of 500 x 20 images) take
# 4-5 minutes when the machine is otherwise idle. The 'E' head (BN-Dropout-FC-BN) accepts any input size.
DEMO_TRAINING = {
    "network": "r18", "version_multiplier": 0.25, "version_act": "prelu", "version_output": "E",
    "emb_size": 128, "image_size": "56,56", "loss_type": "arcface", "margin_s": 32.0, "margin_m": 0.3,
    "per_batch_size": 32, "lr": 0.1, "wd": 0.0005, "mom": 0.9, "max_steps": 1500, "lr_steps": "1000,1300",
    "warmup_steps": 50, "verbose": 250, "verify_first": True, "frequent": 50, "ckpt": 1, "data_workers": 1, "rand_mirror": 1,
    "target": "lfw,cfp_fp,agedb_30",
}
# The synthetic generator's defaults: 500 training identities x 20 images, three packs of 400 pairs.
DEMO_DATA = {"num_ids": 500, "imgs_per_id": 20, "seed": 0, "num_workers": 2}
GOAL = 0.95


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon demo", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="directory for data, model, logs")
    parser.add_argument("--max-steps", type=int, default=DEMO_TRAINING["max_steps"],
                        help="training batches")
    parser.add_argument("--network", default=DEMO_TRAINING["network"], help="backbone")
    parser.add_argument("--version-multiplier", type=float, default=DEMO_TRAINING["version_multiplier"],
                        help="width multiplier of the backbone")
    parser.add_argument("--ctx", default="cpu:1", help="contexts (cpu:2 splits each batch over two)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                        help="compute precision (bf16: CPUs with avx512_bf16/AMX)")
    parser.add_argument("--num-ids", type=int, default=DEMO_DATA["num_ids"], help="synthetic training identities")
    parser.add_argument("--imgs-per-id", type=int, default=DEMO_DATA["imgs_per_id"], help="images per identity")
    parser.add_argument("--pairs-per-bin", type=int, default=400, help="pairs in each verification pack")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    parser.add_argument("--dry-run", action="store_true", help="train without writing model files")
    return parser


def ensure_dataset(data_dir: str, **options) -> str:
    """Write the synthetic dataset into ``data_dir`` unless it is already complete."""
    from insightgluon.data.synthetic import make_synthetic_dataset

    if os.path.isfile(os.path.join(data_dir, "property")) and os.path.isfile(os.path.join(data_dir, "lfw.bin")):
        logger.info("synthetic dataset: %s (already there)", data_dir)
        return data_dir
    tic = time.time()
    logger.info("writing the synthetic dataset to %s ...", data_dir)
    make_synthetic_dataset(data_dir, **dict(DEMO_DATA, **options))
    logger.info("synthetic dataset written in %.0f s", time.time() - tic)
    return data_dir


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``insightgluon demo``."""
    from insightgluon.config import TrainConfig
    from insightgluon.train import train
    from insightgluon.train.loop import tensorboard_dir

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    output_dir(args.output, "--output")
    data_dir = ensure_dataset(os.path.join(args.output, "data"), num_ids=args.num_ids,
                              imgs_per_id=args.imgs_per_id, pairs_per_bin=args.pairs_per_bin)
    prefix = os.path.join(args.output, "model", "demo")
    settings = dict(DEMO_TRAINING, data_dir=data_dir, prefix=prefix, max_steps=args.max_steps,
                    network=args.network, version_multiplier=args.version_multiplier, ctx=args.ctx,
                    dtype=args.dtype,
                    resume="auto" if args.resume else "", dry_run=args.dry_run)
    cfg = TrainConfig(**settings).resolve()
    tic = time.time()
    result = train(cfg)
    minutes = (time.time() - tic) / 60
    out = sys.stdout.write
    out(f"\ndemo: {result.steps} batches of {cfg.global_batch} ({cfg.dtype}) in {minutes:.1f} min\n")
    out("verification accuracy (chance = 0.5):\n")
    for row in result.verification:
        sets = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "step")
        out(f"  batch {row['step']:>5}: {sets}\n")
    rounds = [r for r in result.verification if r["step"] > 0]
    best = max(rounds, key=lambda r: min(v for k, v in r.items() if k != "step"), default=None)
    worst_of_best = min((v for k, v in best.items() if k != "step"), default=0.0) if best else 0.0
    reached = worst_of_best >= GOAL
    out(f"{'reached' if reached else 'did NOT reach'} {GOAL} on every set"
        + (f" (best round: batch {best['step']}, lowest set {worst_of_best:.4f})\n" if best else "\n"))
    if not cfg.dry_run:
        saved = os.path.basename(result.saved[-1]) if result.saved else ""
        index = int(saved.rsplit("-", 1)[1].split(".")[0]) if saved else 0
        out(f"model:       {prefix}-symbol.json + {saved or '(no checkpoint saved)'}\n"
            f"state:       {result.state_file}\n"
            f"log:         {prefix}-train.log\n"
            f"config:      {prefix}-config.yml\n"
            f"tensorboard: tensorboard --logdir {tensorboard_dir(prefix)}\n")
        if saved:
            out(f"verify:      insightgluon verify --data-dir {data_dir} --model {prefix},{index}\n")
    return 0 if reached else 1
