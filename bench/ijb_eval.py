"""IJB-C at full scale from saved features: seconds and peak memory of ``insightgluon ijb --features``.

Writes IJB-C-sized meta files and features into a temporary folder - 469,375 images of 23,124
templates (about 3 media a template), 15,658,489 template pairs (19,557 genuine), the 1:N
lists (G1 1,772 and G2 1,759 gallery templates, 19,593 mixed probes) and a ``(469375, 1024)``
float32 ``.npy`` of image features (crop and mirror, 512 each) - then runs the evaluation as a
separate process and reports its wall time and peak resident memory (``/usr/bin/time``-style,
from ``resource.getrusage`` of the child).

    OMP_NUM_THREADS=2 python bench/ijb_eval.py [--images 469375] [--pairs 15658489]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_dataset(root: str, images: int, templates: int, pairs: int, rng) -> None:
    meta = os.path.join(root, "IJBC", "meta")
    os.makedirs(meta)
    os.makedirs(os.path.join(root, "IJBC", "loose_crop"))
    subjects = 3531
    template_of = np.sort(rng.integers(0, templates, images))
    template_of[:templates] = np.arange(templates)  # every template has an image
    template_of.sort()
    media_of = template_of * 4 + rng.integers(0, 3, images)
    names = np.char.add(np.arange(1, images + 1).astype(str), ".jpg")
    np.savetxt(os.path.join(meta, "ijbc_face_tid_mid.txt"),
               np.column_stack([names, template_of.astype(str), media_of.astype(str)]), fmt="%s")
    points = rng.uniform(30, 90, (images, 10)).round(3)
    score = rng.uniform(0.1, 1.0, images).round(3)
    np.savetxt(os.path.join(meta, "ijbc_name_5pts_score.txt"),
               np.column_stack([names, points.astype(str), score.astype(str)]), fmt="%s")
    subject_of = np.arange(templates) % subjects
    t1 = rng.integers(0, templates, pairs)
    t2 = rng.integers(0, templates, pairs)
    genuine = rng.choice(pairs, 19557, replace=False)
    t2[genuine] = (t1[genuine] + subjects * rng.integers(1, 3, len(genuine))) % templates
    label = (subject_of[t1] == subject_of[t2]).astype(np.int64)
    np.savetxt(os.path.join(meta, "ijbc_template_pair_label.txt"), np.column_stack([t1, t2, label]), fmt="%d")
    gallery = np.arange(subjects)  # template k < 3531 is the gallery template of subject k
    for name, rows in (("G1", gallery[:1772]), ("G2", gallery[1772:])):
        np.savetxt(os.path.join(meta, f"ijbc_1N_gallery_{name}.csv"), np.column_stack([rows, rows]), fmt="%d",
                   delimiter=",", header="TEMPLATE_ID,SUBJECT_ID", comments="")
    probes = np.arange(subjects, subjects + 19593)
    np.savetxt(os.path.join(meta, "ijbc_1N_probe_mixed.csv"), np.column_stack([probes, subject_of[probes]]),
               fmt="%d", delimiter=",", header="TEMPLATE_ID,SUBJECT_ID", comments="")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=469375)
    parser.add_argument("--templates", type=int, default=23124)
    parser.add_argument("--pairs", type=int, default=15658489)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_dataset(root, args.images, args.templates, args.pairs, rng)
        feats = np.lib.format.open_memmap(os.path.join(root, "f.npy"), mode="w+", dtype=np.float32,
                                          shape=(args.images, 1024))
        for begin in range(0, args.images, 65536):
            end = min(begin + 65536, args.images)
            feats[begin:end] = rng.normal(size=(end - begin, 1024)).astype(np.float32)
        feats.flush()
        del feats
        print(f"wrote the data in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "insightgluon", "ijb", "--features", os.path.join(root, "f.npy"),
                              "--data-root", root], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if run.returncode:
            raise SystemExit(run.stderr[-3000:])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
    print(run.stdout.strip())
    print(f"{args.images} images, {args.templates} templates, {args.pairs} pairs: evaluation from saved features "
          f"{seconds:.1f} s, peak resident memory {peak:.2f} GiB (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
