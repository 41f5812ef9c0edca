"""``insightgluon convert``: an arcface_torch ``.pth`` or an InsightFace ONNX model as an MXNet checkpoint.

    insightgluon convert backbone.pth --network iresnet50 --output model/r50-glint
    insightgluon convert w600k_r50.onnx --output model/w600k-r50
"""
import argparse
import os
import sys
from typing import List, Optional

import numpy as np

from insightgluon.errors import CheckpointError

# fp32 parity of the written checkpoint against the source it was converted from
TOLERANCE = 1e-5
CHECK_IMAGES = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon convert",
        description="Write PREFIX-symbol.json and PREFIX-0000.params from an arcface_torch state dict "
                    "(.pth/.pt, read without PyTorch) or an ONNX recognition model whose graph is an "
                    "iresnet or mbf (InsightFace's packs). The graph normalises raw RGB itself, as the 2018 "
                    "checkpoints do. The written files are bound with mx.mod.Module and compared with the "
                    "source before the command succeeds.")
    parser.add_argument("source", metavar="SRC", help="backbone.pth, model.pt or model.onnx")
    parser.add_argument("--network", default=None,
                        help="zoo network the file is (iresnet18...iresnet200, mbf, mbf_large, vit_t...vit_l); "
                             "default: found from the file")
    parser.add_argument("--output", required=True, metavar="PREFIX", help="checkpoint prefix to write")
    parser.add_argument("--epoch", type=int, default=0, help="epoch number of the written checkpoint")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from insightgluon.convert.source import embed, load_converted, module_embedding, onnx_embedding, write_checkpoint
    from insightgluon.model_io import checkpoint_paths
    from insightgluon.outputs import output_prefix
    from insightgluon.parity import max_relative

    output_prefix(args.output, "--output")

    converted = load_converted(args.source, args.network)
    out = sys.stdout
    out.write(f"{args.source}: {converted.network}, {converted.emb_size}-d embedding\n")
    images = np.round(np.random.RandomState(0).uniform(0, 255, (CHECK_IMAGES, 3, 112, 112))).astype(np.float32)
    ours = embed(converted, images)
    written = write_checkpoint(converted, args.output, args.epoch)
    try:
        checks = [("mx.mod.Module on the written files against the converted network",
                   max_relative(module_embedding(args.output, args.epoch, images), ours))]
        if args.source.lower().endswith(".onnx"):
            checks.append((f"the written files against onnxruntime on {os.path.basename(args.source)}",
                           max_relative(ours, onnx_embedding(args.source, images))))
        for what, value in checks:
            if value > TOLERANCE:
                raise CheckpointError(f"{args.source}: {what}: max relative difference {value:.2e} "
                                      f"> {TOLERANCE:g}; nothing written")
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.unlink(path)
        raise
    sym_file, params_file = checkpoint_paths(args.output, args.epoch)
    out.write(f"wrote {sym_file} and {params_file}\n")
    for what, value in checks:
        out.write(f"checked on {CHECK_IMAGES} images, fp32: {what}: max relative difference {value:.1e}\n")
    return 0
