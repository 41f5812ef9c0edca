"""``insightgluon pack-bin``: a pairs file -> a ``.bin`` verification pack.

Accepts LFW ``pairs.txt`` (``name n1 n2`` / ``name1 n1 name2 n2`` lines, images
found with ``--pattern`` under ``--image-root``) and simple ``path1 path2 0|1``
lines. Every image must exist and decode: a pack with a missing image would
shift every later pair, so that is an error naming the pairs-file line.
"""
import argparse
import os
import sys
from typing import List, Optional

from insightgluon.data.pack import LFW_PATTERN
from insightgluon.errors import DataFormatError
from insightgluon.outputs import output_file
from insightgluon.progress import progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insightgluon pack-bin", description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", help="pairs file (LFW pairs.txt or 'path1 path2 0|1' lines)")
    parser.add_argument("-o", "--output", required=True, help=".bin file to write")
    parser.add_argument("--image-root", default=None, help="base of relative image paths "
                        "(default: the pairs file's directory)")
    parser.add_argument("--pattern", default=LFW_PATTERN,
                        help="LFW image path from a name and number")
    parser.add_argument("--image-size", default="112,112", help="H,W of the stored images")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality when re-encoding")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from insightgluon.data.bin import save_bin
    from insightgluon.data.pack import ImageItem, load_aligned, parse_pairs

    try:
        size = tuple(int(v) for v in args.image_size.split(","))
        assert len(size) == 2
    except (ValueError, AssertionError):
        raise DataFormatError(f"--image-size: expected H,W, got {args.image_size!r}") from None
    output_file(args.output, "--output")
    root = args.image_root or os.path.dirname(os.path.abspath(args.pairs))
    pairs = parse_pairs(args.pairs, root, args.pattern)
    bins, issame = [], []
    for a, b, same, where in progress(pairs, desc="pack-bin", unit="pair"):
        for path in (a, b):
            if not os.path.isfile(path):
                raise DataFormatError(f"{where}: image {path} does not exist")
            bins.append(load_aligned(ImageItem(path, 0, where=where), size, args.quality))
        issame.append(same)
    save_bin(args.output, bins, issame)
    num_same = sum(issame)
    sys.stdout.write(f"{args.output}: {len(issame)} pairs ({num_same} same, {len(issame) - num_same} different)\n")
    return 0
