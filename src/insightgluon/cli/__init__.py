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
    "export": ("export", "export a model to ONNX (or strip fc7 from a checkpoint)"),
    "align": ("align", "detect and align faces to 112x112 with MTCNN"),
    "face2rec": ("face2rec", "image folder or .lst -> train.rec/train.idx/property"),
    "pack-bin": ("pack_bin", "pairs file -> .bin verification pack"),
    "inspect": ("inspect", "summarise, dump or unpack a .rec dataset or a .bin pack"),
    "synth": ("synth", "write the embedded synthetic face dataset"),
    "networks": ("networks", "list networks or print a model's parameters and FLOPs"),
    "face": ("face", "verify two faces or search a gallery with a trained model"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon",
        description="InsightFace face-recognition training and evaluation on MXNet Gluon.",
        epilog="Run 'insightgluon SUBCOMMAND --help' for the options of one subcommand.",
    )
    parser.add_argument("--version", action="version", version=f"insightgluon {__version__}")
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), metavar="SUBCOMMAND",
                        help="; ".join(f"{k}: {v[1]}" for k, v in SUBCOMMANDS.items()))
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
