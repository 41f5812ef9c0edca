"""``insightgluon export``: an MXNet checkpoint to ONNX or OpenVINO IR, or a training checkpoint without fc7.

    insightgluon export --model model/r100,1 --output r100.onnx --calibrate-bin lfw.bin --far 1e-3
    insightgluon export --model model/r100,1 --output r100.xml     # OpenVINO IR: r100.xml + r100.bin
    insightgluon export --model model/r100,1 --strip-fc7 model/r100-slim
"""
import argparse
import logging
import sys
from typing import List, Optional

from insightgluon.errors import ConfigError
from insightgluon.outputs import output_file, output_prefix

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insightgluon export",
        description="Export a checkpoint's embedding to ONNX (onnxruntime and insightface "
                    "accept it as is) or to an OpenVINO IR, or strip fc7 from a training checkpoint.")
    parser.add_argument("--model", required=True,
                        help="checkpoint as prefix,epoch, or an arcface_torch backbone.pth (converted first)")
    parser.add_argument("--layer", default="fc1", help="embedding layer (default: fc1)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--output", help="file to write: model.onnx, or model.xml for an OpenVINO IR")
    mode.add_argument("--strip-fc7", dest="strip_fc7", metavar="OUT_PREFIX",
                      help="write OUT_PREFIX-symbol.json/-NNNN.params ending at --layer")
    parser.add_argument("--image-size", dest="image_size", default="112,112",
                        help="input H,W or one side (default: 112,112; SphereNet: 112,96)")
    parser.add_argument("--engine", default="auto", choices=("auto", "zoo", "graph"),
                        help="auto: a checkpoint of a zoo network (2018 and model-zoo files included) "
                             "is exported through that network, checked against its own graph; else "
                             "the graph as saved. zoo: require that; graph: always the saved graph")
    parser.add_argument("--format", choices=("onnx", "openvino"), default=None,
                        help="onnx, or openvino (an IR: OUTPUT.xml and OUTPUT.bin, converted from the "
                             "ONNX export and checked against MXNet); default: from OUTPUT's extension")
    parser.add_argument("--ir-weights", dest="ir_weights", choices=("fp32", "fp16"), default="fp32",
                        help="how an IR stores its weights: fp32 (default; the exact figures) or fp16 "
                             "(half the file; computed in the inference precision as before)")
    parser.add_argument("--calibrate-bin", dest="calibrate_bin", metavar="BIN",
                        help=".bin verification set to calibrate the decision threshold on")
    parser.add_argument("--far", type=float, default=1e-3,
                        help="false-accept rate of the calibrated threshold (default: 1e-3)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative difference of the export to MXNet (default: 1e-4; "
                             "an IR with fp16 weights: 1e-2)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=32,
                        help="images per forward during calibration (default: 32)")
    return parser


def _calibrate(args, block, image_hw) -> dict:
    from insightgluon.export.deploy import calibrate_threshold

    if not args.calibrate_bin:
        return {}
    block.hybridize(static_alloc=True, static_shape=True)
    values = calibrate_threshold(block, args.calibrate_bin, args.far, image_hw, args.batch_size)
    sys.stdout.write(f"{args.calibrate_bin}: threshold_cos {values['threshold_cos']:.4f} at FAR "
                     f"{args.far:g} (TAR {values['tar']:.4f}, accuracy {values['accuracy']:.4f})\n")
    return values


def main(argv: Optional[List[str]] = None) -> int:
    from insightgluon.config import parse_image_size
    from insightgluon.convert.source import TORCH_SUFFIXES
    from insightgluon.model_io import load_symbol_block, parse_model_spec

    args = build_parser().parse_args(argv)
    if args.model.lower().endswith(TORCH_SUFFIXES) and not args.strip_fc7:
        output_file(args.output, "--output")
        return _export_converted(args, parse_image_size(args.image_size))
    models = parse_model_spec(args.model)
    if len(models) != 1:
        raise ConfigError(f"--model '{args.model}': export takes one prefix,epoch")
    prefix, epoch = models[0]
    image_hw = parse_image_size(args.image_size)
    if args.strip_fc7:
        output_prefix(args.strip_fc7, "--strip-fc7")
    else:
        output_file(args.output, "--output")
    if args.strip_fc7:
        from insightgluon.export.deploy import strip_fc7, write_checkpoint_metadata

        sym_file, params_file = strip_fc7(prefix, epoch, args.strip_fc7, args.layer)
        sys.stdout.write(f"wrote {sym_file} and {params_file}\n")
        if args.calibrate_bin:
            values = _calibrate(args, load_symbol_block(args.strip_fc7, epoch, args.layer), image_hw)
            values.update(layer=args.layer, image_size="{}x{}".format(*image_hw))
            sys.stdout.write(f"wrote {write_checkpoint_metadata(args.strip_fc7, epoch, values)}\n")
        return 0
    return _export(args, prefix, epoch, image_hw)


def _format(args) -> str:
    by_name = "openvino" if args.output.lower().endswith(".xml") else "onnx"
    if args.format == "openvino" and by_name != "openvino":
        raise ConfigError(f"--output {args.output}: an OpenVINO IR is written as a .xml file (its .bin beside it)")
    if args.format == "onnx" and by_name != "onnx":
        raise ConfigError(f"--output {args.output}: a .xml file is an OpenVINO IR; name the ONNX file .onnx")
    return by_name


def _export_converted(args, image_hw) -> int:
    """Export an arcface_torch state dict: converted (as ``insightgluon convert``) into a temporary
    checkpoint, exported from there; the metadata names the ``.pth``."""
    import os
    import tempfile

    from insightgluon.convert.source import load_converted, write_checkpoint

    converted = load_converted(args.model)
    with tempfile.TemporaryDirectory(prefix="insightgluon-convert-") as folder:
        prefix = os.path.join(folder, converted.network)
        write_checkpoint(converted, prefix)
        return _export(args, prefix, 0, image_hw, made_from=os.path.abspath(args.model))


def _export(args, prefix: str, epoch: int, image_hw, made_from: str = "") -> int:
    import tempfile

    from insightgluon.engines import ENGINES, Settings, model_source
    from insightgluon.export.onnx import DEFAULT_TOLERANCE, export_embedding

    fmt = _format(args)
    source = model_source(prefix, epoch, args.layer)
    model = ENGINES.get("mxnet" if args.engine == "auto" else args.engine)(
        source, Settings(image_hw=image_hw, fast_prelu=False))
    logger.info("%s,%d: exporting %s", prefix, epoch, model.describe())
    values = _calibrate(args, model.block, image_hw)
    if made_from:
        values["source"] = made_from
    if fmt == "onnx":
        tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
        report = export_embedding(model, prefix, epoch, args.output, args.layer, image_hw, metadata=values,
                                  tolerance=tolerance)
        sys.stdout.write(f"{report}\n")
        return 0
    import functools

    from insightgluon.engines.base import run_block
    from insightgluon.export.openvino import bin_path, save_ir
    from insightgluon.openvino_cpu import require_openvino

    require_openvino()
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = f"{folder}/model.onnx"
        report = export_embedding(model, prefix, epoch, onnx_path, args.layer, image_hw, metadata=values)
        sys.stdout.write(f"{report}\n")
        ir_report = save_ir(onnx_path, args.output, functools.partial(run_block, model.block), image_hw,
                            compress_to_fp16=args.ir_weights == "fp16", tolerance=args.tolerance)
    sys.stdout.write(f"{ir_report}\n")
    sys.stdout.write(f"wrote {args.output} and {bin_path(args.output)} (weights stored in "
                     f"{'float16' if args.ir_weights == 'fp16' else 'float32'})\n")
    return 0
