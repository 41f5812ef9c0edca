"""Accuracy of bfloat16 against float32: the demo trained in each, and one model verified in each.

1. ``insightgluon demo --dtype fp32`` and ``--dtype bf16`` (synthetic faces, r18 x0.25 ArcFace, the
   same seed and batches): the verification table of each run, side by side, and the first batch at
   which every pack reached the demo's goal (0.95).
2. The fp32 demo model verified by ``insightgluon verify`` in fp32 and in bf16 on each engine of
   ``--engines`` (same weights) on three LFW-sized packs of ``--pairs`` pairs (new synthetic identities,
   seed 1: the demo's 400-pair packs resolve only 0.25%, one pair): accuracy of each and the difference
   of bf16 to fp32.

Each demo run takes 5-15 minutes on a 2-core machine; ``--demos fp32`` trains only the one part 2 needs.

    OMP_NUM_THREADS=2 python bench/precision_accuracy.py [--output DIR] [--max-steps 1500] [--pairs 6000] \
        [--demos fp32,bf16] [--engines mxnet,openvino]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

GOAL = 0.95
ROW = re.compile(r"^\s*batch\s+(\d+):\s+(.*)$")
VERIFY = re.compile(r"^\[(\w+)\]Accuracy-Flip: ([\d.]+)\+-([\d.]+)")


def run(*args) -> str:
    proc = subprocess.run([sys.executable, "-m", "insightgluon", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # the demo exits 1 when it misses its goal
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"insightgluon {' '.join(args)} failed ({proc.returncode})")
    return proc.stdout


def demo_rows(stdout: str):
    """``{batch: {pack: accuracy}}`` from the demo's verification table."""
    rows = {}
    for line in stdout.splitlines():
        match = ROW.match(line)
        if match:
            values = match.group(2).split()
            rows[int(match.group(1))] = {values[i]: float(values[i + 1]) for i in range(0, len(values), 2)}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--pairs", type=int, default=6000, help="pairs per pack for the fp32/bf16 verification")
    parser.add_argument("--demos", default="fp32,bf16", help="demo runs to train (part 2 needs fp32)")
    parser.add_argument("--engines", default="mxnet,openvino", help="engines of the fp32/bf16 verification")
    args = parser.parse_args(argv)
    root = args.output or tempfile.mkdtemp(prefix="precision-")
    out = sys.stdout.write
    tables = {}
    for dtype in args.demos.split(","):
        stdout = run("demo", "--dtype", dtype, "--output", os.path.join(root, dtype),
                     "--max-steps", str(args.max_steps))
        tables[dtype] = demo_rows(stdout)
        summary = [line for line in stdout.splitlines() if line.startswith("demo:")]
        out(f"{dtype}: {summary[0] if summary else ''}\n")
    out("\nbatch   " + "   ".join(f"{d}: lfw cfp_fp agedb_30" for d in tables) + "\n")
    for batch in sorted(set().union(*tables.values())):
        cells = []
        for dtype in tables:
            row = tables[dtype].get(batch, {})
            cells.append(" ".join(f"{row.get(p, float('nan')):.4f}" for p in ("lfw", "cfp_fp", "agedb_30")))
        out(f"{batch:>5}   " + "   ".join(cells) + "\n")
    for dtype, rows in tables.items():
        reached = [b for b, row in sorted(rows.items()) if b and min(row.values()) >= GOAL]
        out(f"{dtype}: every pack >= {GOAL} first at batch {reached[0] if reached else 'never'}\n")
    if "fp32" not in tables:
        return 0

    model_dir = os.path.join(root, "fp32", "model")
    saved = sorted(f for f in os.listdir(model_dir) if f.endswith(".params"))
    prefix, epoch = os.path.join(model_dir, "demo"), int(saved[-1].rsplit("-", 1)[1].split(".")[0])
    data = os.path.join(root, "verify-data")
    if not os.path.exists(data):
        from insightgluon.data.synthetic import make_synthetic_dataset
        make_synthetic_dataset(data, num_ids=1, imgs_per_id=1, num_val_ids=1000, pairs_per_bin=args.pairs,
                               seed=1, num_workers=2)
    out(f"\nthe fp32 demo model ({prefix},{epoch}) verified in fp32 and bf16, {args.pairs} pairs per pack:\n")
    for engine in args.engines.split(","):
        results = {}
        for dtype in ("fp32", "bf16"):
            stdout = run("verify", "--model", f"{prefix},{epoch}", "--data-dir", data, "--image-size", "56,56",
                         "--dtype", dtype, "--engine", engine)
            results[dtype] = {m.group(1): float(m.group(2)) for m in map(VERIFY.match, stdout.splitlines()) if m}
        for pack in results["fp32"]:
            a, b = results["fp32"][pack], results["bf16"].get(pack, float("nan"))
            out(f"  {engine:9s} {pack:9s} fp32 {a:.5f}  bf16 {b:.5f}  difference {100 * (b - a):+.3f}%\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
