"""``insightgluon inspect``: summarise a ``.rec`` dataset or a ``.bin`` pack; dump samples; unpack.

PATH is a dataset directory, a ``.rec`` file or a ``.bin`` file.
"""
import argparse
import sys
from typing import List, Optional

from insightgluon.outputs import output_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insightgluon inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="dataset directory, .rec or .bin")
    parser.add_argument("--dump", nargs=2, metavar=("N", "DIR"), help="write N sample images (pairs for a .bin) to DIR")
    parser.add_argument("--unpack", metavar="DIR", help="write every image of a .rec to DIR/<label>/<pos>.jpg")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from insightgluon.data import summary
    from insightgluon.data.recordio import FaceRecordDataset

    count = None
    if args.dump:
        try:
            count = int(args.dump[0])
        except ValueError:
            parser.error(f"--dump N DIR: N must be an integer, got {args.dump[0]!r}")
        output_dir(args.dump[1], "--dump")
    if args.unpack:
        output_dir(args.unpack, "--unpack")
    if args.path.endswith(".bin"):
        if args.unpack:
            parser.error("--unpack applies to .rec datasets; use --dump for a .bin")
        lines = summary.describe_bin(args.path)
        if count is not None:
            lines.append(f"dumped {len(summary.dump_bin(args.path, count, args.dump[1]))} images to {args.dump[1]}")
    else:
        ds = FaceRecordDataset(args.path)
        lines = summary.describe_rec(ds)
        if count is not None:
            lines.append(f"dumped {len(summary.dump_rec(ds, count, args.dump[1]))} images to {args.dump[1]}")
        if args.unpack:
            lines.append(f"unpacked {summary.unpack_rec(ds, args.unpack)} images to {args.unpack}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
