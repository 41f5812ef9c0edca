"""``insightgluon SUBCOMMAND ...``: one command-line surface for every tool.

Each subcommand lives in its own module under :mod:`insightgluon.cli` with a
``main(argv=None) -> int`` function; modules are imported only when their
subcommand runs, so ``insightgluon --help`` does not load MXNet.
"""
import argparse
import importlib
import logging
import sys
from typing import List, Optional

from insightgluon import __version__
from insightgluon.errors import InsightGluonError

# subcommand -> (module under insightgluon.cli, one-line description)
SUBCOMMANDS = {
    "demo": ("demo", "synthetic dataset -> train -> verify, on this machine's CPUs"),
    "train": ("train", "train a face-recognition model (legacy train_softmax.py flags)"),
    "verify": ("verify", "verification accuracy, AUC, TAR@FAR and ROC on .bin sets"),
    "megaface": ("megaface", "MegaFace features, noise removal and CMC/ROC evaluation"),
    "ijb": ("ijb", "IJB-B / IJB-C 1:1 TAR@FAR and 1:N, as InsightFace computes them"),
    "export": ("export", "export a model to ONNX (or strip fc7 from a checkpoint)"),
    "convert": ("convert", "an arcface_torch .pth or InsightFace ONNX model -> MXNet checkpoint"),
    "align": ("align", "detect and align faces to 112x112 with MTCNN"),
    "face2rec": ("face2rec", "image folder or .lst -> train.rec/train.idx/property"),
    "pack-bin": ("pack_bin", "pairs file -> .bin verification pack"),
    "inspect": ("inspect", "summarise, dump or unpack a .rec dataset or a .bin pack"),
    "synth": ("synth", "write the embedded synthetic face dataset"),
    "networks": ("networks", "list networks or print a model's parameters and FLOPs"),
    "face": ("face", "verify two faces, search a gallery, recognise everyone in photos and videos"),
}
# How `insightgluon --help` groups them; a subcommand missing here is listed under "other".
GROUPS = {
    "data": ("synth", "align", "face2rec", "pack-bin", "inspect"),
    "training": ("demo", "train", "networks"),
    "evaluation": ("verify", "megaface", "ijb"),
    "deployment": ("export", "convert", "face"),
}
FIRST_COMMANDS = (
    ("make demo", "synthetic faces -> train ArcFace -> verification accuracy, on this machine's CPUs"),
    ("make test", "the whole test suite"),
)


def _listing() -> str:
    """Subcommands one per line with their descriptions, grouped, then the two first commands."""
    width = max(len(name) for name in SUBCOMMANDS) + 2
    grouped = dict(GROUPS)
    rest = tuple(name for name in SUBCOMMANDS if not any(name in names for names in GROUPS.values()))
    if rest:
        grouped["other"] = rest
    lines = []
    for group, names in grouped.items():
        lines.append(f"{group}:")
        lines += [f"  {name:<{width}}{SUBCOMMANDS[name][1]}" for name in names if name in SUBCOMMANDS]
        lines.append("")
    lines.append("Run 'insightgluon SUBCOMMAND --help' for the options of one subcommand.")
    lines.append("First steps in a fresh clone (no set-up needed):")
    width = max(len(cmd) for cmd, _ in FIRST_COMMANDS) + 3
    lines += [f"  {cmd:<{width}}# {text}" for cmd, text in FIRST_COMMANDS]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon", usage="insightgluon [-h] [--version] SUBCOMMAND ...",
        description="InsightFace face-recognition training and evaluation on MXNet Gluon.",
        epilog=_listing(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"insightgluon {__version__}")
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), metavar="SUBCOMMAND",
                        help="one of the subcommands below")
    return parser


def run_tool(module: str, argv: Optional[List[str]] = None) -> int:
    """Run ``insightgluon.cli.<module>.main(argv)`` turning input errors into one line.

    The legacy script shims (``train_softmax.py``, ``datasets/face2rec.py``, ...)
    call this too, so every entry point reports bad input the same way.
    """
    from insightgluon import runtime

    runtime.configure()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return importlib.import_module(f"insightgluon.cli.{module}").main(argv) or 0
    except InsightGluonError as err:
        logging.getLogger("insightgluon").error("%s", err)
        return 2
    except OSError as err:
        # The commands check their outputs up front; this catches what happens later (a full
        # disk, a file removed meanwhile), still as one line.
        from insightgluon.outputs import os_error_line

        logging.getLogger("insightgluon").debug("OS error", exc_info=True)
        logging.getLogger("insightgluon").error("%s", os_error_line(err))
        return 1
    except KeyboardInterrupt:
        logging.getLogger("insightgluon").error("interrupted")
        return 130


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``insightgluon`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    head = argv[:1] if argv and not argv[0].startswith("-") else argv
    args = _parser().parse_args(head)
    return run_tool(SUBCOMMANDS[args.subcommand][0], argv[1:])


def train_softmax() -> int:
    """Entry point of the ``train_softmax`` console script (the legacy script's name)."""
    return run_tool("train")
