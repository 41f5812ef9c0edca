"""``insightgluon networks``: every network with its size and cost, or the figures of chosen ones."""
import argparse
import sys
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon networks",
        description="Without NAME: every network with its parameters, MFLOPs (2 x multiply-adds) for "
                    "one face at the size it was made for, and what it is. With NAME(s): the same for "
                    "those networks under the options given.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="network names (e.g. r100 y1)")
    parser.add_argument("--names-only", action="store_true", help="print only the names, one per line")
    parser.add_argument("--emb-size", dest="emb_size", type=int, default=512)
    parser.add_argument("--version-se", dest="version_se", type=int, default=0)
    parser.add_argument("--version-input", dest="version_input", type=int, default=1)
    parser.add_argument("--version-output", dest="version_output", default=None,
                        help="embedding head (default: the network's own, E or GDC)")
    parser.add_argument("--version-unit", dest="version_unit", type=int, default=3)
    parser.add_argument("--version-act", dest="version_act", default="prelu")
    parser.add_argument("--version-multiplier", dest="version_multiplier", type=float, default=1.0)
    parser.add_argument("--image-size", dest="image_size", default="",
                        help="H,W (default: the network's own, 112,112 or 112,96 for SphereNet)")
    return parser


def describe(name: str) -> str:
    """The first line of the network's builder docstring."""
    from insightgluon.networks.base import NETWORKS

    return (NETWORKS.get(name).__doc__ or "").strip().splitlines()[0] if NETWORKS.get(name).__doc__ else ""


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from insightgluon.config import parse_image_size
    from insightgluon.networks import network_names
    from insightgluon.networks.base import NETWORKS
    from insightgluon.networks.summary import summarize

    names = args.names or network_names()
    for name in names:
        NETWORKS.get(name)  # unknown name -> one-line error listing the valid ones
    if args.names_only:
        sys.stdout.write("\n".join(names) + "\n")
        return 0
    size = parse_image_size(args.image_size) if args.image_size else None
    options = {k: v for k, v in vars(args).items() if k not in ("names", "image_size", "names_only")}
    out = sys.stdout
    out.write(f"{'network':<10} {'params':>12} {'M params':>9} {'MFLOPs':>9} {'input':>8}  {'output':<10} about\n")
    for name in names:
        s = summarize(name, image_size=size, **options)
        out.write(f"{s.name:<10} {s.params:>12,d} {s.params / 1e6:>9.2f} {s.mflops:>9.1f} "
                  f"{'{}x{}'.format(*s.image_size):>8}  {str(s.output_shape):<10} {describe(name)}\n")
    return 0
