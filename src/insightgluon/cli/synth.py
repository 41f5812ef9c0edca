"""``insightgluon synth``: write the embedded synthetic face dataset (``faces_synth_112x112``).

Training identities in ``train.rec`` plus ``lfw.bin``, ``cfp_fp.bin`` and
``agedb_30.bin`` verification packs whose identities are disjoint from
training and from each other. Deterministic from ``--seed``.
"""
import argparse
import os
import sys
from typing import List, Optional

from insightgluon.outputs import output_dir, output_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insightgluon synth", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-o", "--output", default="faces_synth_112x112", help="dataset directory")
    parser.add_argument("--num-ids", type=int, default=500, help="training identities")
    parser.add_argument("--imgs-per-id", type=int, default=20, help="training images per identity")
    parser.add_argument("--num-val-ids", type=int, default=100, help="identities per verification pack")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per verification pack (even)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--image-size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering processes")
    parser.add_argument("--preview", metavar="PNG", help="also save a preview grid (rows = identities)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from insightgluon.data.recordio import FaceRecordDataset
    from insightgluon.data.summary import describe_bin, describe_rec
    from insightgluon.data.synthetic import VERIFICATION_PACKS, make_synthetic_dataset, save_preview

    if args.pairs < 2 or args.pairs % 2 or args.num_val_ids < 2 or args.num_ids < 1 or args.imgs_per_id < 1:
        build_parser().error("need --num-ids, --imgs-per-id >= 1, --num-val-ids >= 2 and an even --pairs >= 2")
    output_dir(args.output, "--output")
    if args.preview:
        output_file(args.preview, "--preview")
    make_synthetic_dataset(args.output, num_ids=args.num_ids, imgs_per_id=args.imgs_per_id,
                           num_val_ids=args.num_val_ids, pairs_per_bin=args.pairs, seed=args.seed,
                           image_size=args.image_size, num_workers=args.workers)
    lines = describe_rec(FaceRecordDataset(args.output))
    for name in VERIFICATION_PACKS:
        lines += describe_bin(os.path.join(args.output, f"{name}.bin"))
    if args.preview:
        save_preview(args.preview, seed=args.seed, image_size=args.image_size)
        lines.append(f"preview: {args.preview}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
