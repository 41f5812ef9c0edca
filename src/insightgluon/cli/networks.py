"""``insightgluon networks``: list the networks, or print a model's size and cost."""
import argparse
import sys
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon networks",
        description="Without NAME: list every network name. With NAME(s): print parameters, "
                    "MFLOPs (2 x multiply-adds) for one image and the output shape.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="network names (e.g. r100 y1)")
    parser.add_argument("--emb-size", dest="emb_size", type=int, default=512)
    parser.add_argument("--version-se", dest="version_se", type=int, default=0)
    parser.add_argument("--version-input", dest="version_input", type=int, default=1)
    parser.add_argument("--version-output", dest="version_output", default=None,
                        help="embedding head (default: the network's own, E or GDC)")
    parser.add_argument("--version-unit", dest="version_unit", type=int, default=3)
    parser.add_argument("--version-act", dest="version_act", default="prelu")
    parser.add_argument("--version-multiplier", dest="version_multiplier", type=float, default=1.0)
    parser.add_argument("--image-size", dest="image_size", type=int, default=112)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from insightgluon.networks import network_names
    from insightgluon.networks.base import NETWORKS

    if not args.names:
        sys.stdout.write("\n".join(network_names()) + "\n")
        return 0
    for name in args.names:
        NETWORKS.get(name)  # unknown name -> one-line error listing the valid ones
    from insightgluon.networks.summary import summarize

    options = {k: v for k, v in vars(args).items() if k not in ("names", "image_size")}
    sys.stdout.write(f"{'network':<8} {'params':>12} {'M params':>9} {'MFLOPs':>10}  output\n")
    for name in args.names:
        s = summarize(name, image_size=args.image_size, **options)
        sys.stdout.write(f"{s.name:<8} {s.params:>12,d} {s.params / 1e6:>9.2f} {s.mflops:>10.1f}"
                         f"  {s.output_shape}\n")
    return 0
