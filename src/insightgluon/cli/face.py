"""``insightgluon face``: compare two faces or search a gallery with a deployed model.

    insightgluon face verify a.jpg b.jpg --model r100.onnx
    insightgluon face search --gallery people/ probe.jpg --model model/r100,1 --top-k 5
"""
import argparse
import sys
from typing import List, Optional

import numpy as np

from insightgluon.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from insightgluon.cli.verify import add_dtype_argument, add_engine_argument

    parser = argparse.ArgumentParser(
        prog="insightgluon face",
        description="Face verification (1:1) and gallery search (1:N) with a model given as "
                    "prefix,epoch, model.onnx or model.xml (OpenVINO IR). Photos are detected and "
                    "aligned with MTCNN (run by OpenVINO when the model is) "
                    "unless --aligned says they are already aligned crops.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True,
                        help="prefix,epoch, model.onnx or model.xml, run as --engine says")
    common.add_argument("--aligned", action="store_true",
                        help="inputs are aligned crops of the model's size (no detection)")
    common.add_argument("--threshold", type=float, default=None,
                        help="cosine threshold (default: the one calibrated into the model)")
    add_engine_argument(common, "auto")
    add_dtype_argument(common)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", parents=[common], help="are two photos the same person?")
    verify.add_argument("images", nargs=2, metavar="IMAGE")
    search = sub.add_parser("search", parents=[common], help="closest identities in a gallery")
    search.add_argument("--gallery", required=True,
                        help="GALLERY/<identity>/<image>, or flat GALLERY/<name>.jpg, <name>-2.jpg")
    search.add_argument("probe", metavar="PROBE")
    search.add_argument("--top-k", dest="top_k", type=int, default=5,
                        help="identities to list (default: 5)")
    search.add_argument("--no-cache", dest="cache", action="store_false",
                        help="do not read or write GALLERY/.insightgluon-embeddings.npz")
    return parser


def _threshold(args, model) -> Optional[float]:
    value = args.threshold if args.threshold is not None else model.threshold
    if value is not None and not -1.0 <= value <= 1.0:
        raise ConfigError(f"threshold {value}: a cosine threshold lies in [-1, 1]")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    from insightgluon.face.search import FaceCropper, FaceModel, Gallery, cosine

    args = build_parser().parse_args(argv)
    from insightgluon.precision import check_dtype

    model = FaceModel.load(args.model, engine=args.engine, dtype=check_dtype(args.dtype, ["cpu(0)"]))
    # MTCNN runs where the embedding runs: on OpenVINO when that was chosen, else on MXNet.
    detector = "openvino" if model.engine.startswith("openvino") else "mxnet"
    cropper = FaceCropper(model.image_size, aligned=args.aligned, detector_engine=detector)
    threshold = _threshold(args, model)
    if args.command == "verify":
        emb = model.embed(np.stack([cropper(p) for p in args.images]))
        score = cosine(emb[0], emb[1])
        line = f"similarity {score:.4f}"
        if threshold is None:
            line += "  (no threshold: export with --calibrate-bin or pass --threshold)"
        else:
            decision = "same" if score > threshold else "different"
            line += f"  threshold {threshold:.4f}  {decision}"
        sys.stdout.write(line + "\n")
        return 0
    gallery = Gallery(args.gallery, model, cropper, cache=args.cache)
    probe = model.embed(cropper(args.probe)[None])[0]
    sys.stdout.write("rank  score   identity  image\n")
    for rank, match in enumerate(gallery.search(probe, args.top_k), 1):
        flag = "" if threshold is None else ("  match" if match.score > threshold else "")
        sys.stdout.write(f"{rank:4d}  {match.score:.4f}  {match.identity}  {match.image}{flag}\n")
    return 0
