"""``insightgluon face``: compare two faces, search a gallery, or recognise everyone in photos and videos.

    insightgluon face verify a.jpg b.jpg --model r100.onnx
    insightgluon face search --gallery people/ probe.jpg --model model/r100,1 --top-k 5
    insightgluon face recognize party.mp4 --gallery people/ --model r100.xml --output out/
"""
import argparse
import contextlib
import signal
import sys
from typing import Iterator, List, Optional

import numpy as np

from insightgluon.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from insightgluon.cli.verify import add_dtype_argument, add_engine_argument

    parser = argparse.ArgumentParser(
        prog="insightgluon face",
        description="Face verification (1:1) and gallery search (1:N) with a model given as "
                    "prefix,epoch, model.onnx, model.xml (OpenVINO IR) or an arcface_torch backbone.pth. Photos are detected and "
                    "aligned with MTCNN (run by OpenVINO when the model is) "
                    "unless --aligned says they are already aligned crops.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True,
                        help="prefix,epoch, model.onnx, model.xml or backbone.pth, run as --engine says")
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
    rec = sub.add_parser("recognize", parents=[common], help="name every face of photos, videos or a camera")
    rec.add_argument("input", metavar="INPUT",
                     help="an image, a folder of images (recursively), a video file, or a camera index (0)")
    rec.add_argument("--gallery", required=True,
                     help="GALLERY/<identity>/<image>, or flat GALLERY/<name>.jpg, <name>-2.jpg")
    rec.add_argument("--output", default="", help="annotated copies and faces.jsonl go here")
    rec.add_argument("--calibrate-bin", dest="calibrate_bin", default="", metavar="PACK",
                     help="calibrate the threshold on this .bin at --far (for models without one)")
    rec.add_argument("--far", type=float, default=1e-3, help="false-accept rate of --calibrate-bin (1e-3)")
    rec.add_argument("--match", choices=("assign", "greedy"), default="assign",
                     help="one identity per face and frame: best total (assign, default) or best pair first")
    rec.add_argument("--top-k", dest="top_k", type=int, default=3, help="best identities recorded per face")
    rec.add_argument("--min-size", dest="min_size", type=float, default=40,
                     help="smallest face searched for, pixels (default 40; smaller is slower)")
    rec.add_argument("--show", action="store_true", help="show annotated frames in a window (q or Esc stops)")
    rec.add_argument("--no-cache", dest="cache", action="store_false",
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

    if args.command == "recognize" and args.output:
        from insightgluon.outputs import output_dir

        output_dir(args.output, "--output")  # before the model and the gallery are loaded

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
    if args.command == "recognize":
        return _recognize(args, model, cropper, threshold, detector)
    gallery = Gallery(args.gallery, model, cropper, cache=args.cache)
    probe = model.embed(cropper(args.probe)[None])[0]
    sys.stdout.write("rank  score   identity  image\n")
    for rank, match in enumerate(gallery.search(probe, args.top_k), 1):
        flag = "" if threshold is None else ("  match" if match.score > threshold else "")
        sys.stdout.write(f"{rank:4d}  {match.score:.4f}  {match.identity}  {match.image}{flag}\n")
    return 0


def _recognize(args, model, cropper, threshold: Optional[float], detector_engine: str) -> int:
    import os

    from insightgluon.align.mtcnn import MTCNN
    from insightgluon.face.media import AnnotatedOutput, open_input
    from insightgluon.face.recognize import FrameRecognizer, recognise_media
    from insightgluon.face.search import Gallery
    from insightgluon.face.viewer import open_viewer

    if threshold is None and args.calibrate_bin:
        from insightgluon.export.deploy import calibrate_threshold

        threshold = calibrate_threshold(model, args.calibrate_bin, args.far, model.image_size)["threshold_cos"]
        sys.stdout.write(f"{args.calibrate_bin}: threshold_cos {threshold:.4f} at FAR {args.far:g}\n")
    if threshold is None:
        raise ConfigError(f"{args.model}: no calibrated threshold; pass --threshold T or --calibrate-bin PACK")
    media = open_input(args.input)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
    gallery = Gallery(args.gallery, model, cropper, cache=args.cache, skip_faceless=True)
    detector = MTCNN.from_preset("deploy", min_size=args.min_size, engine=detector_engine)
    recognizer = FrameRecognizer(model, gallery, detector, threshold, args.match, args.top_k)
    viewer = open_viewer(f"insightgluon face recognize {args.input}") if args.show else None
    output = AnnotatedOutput(args.output, media) if args.output else None
    records = open(os.path.join(args.output, "faces.jsonl"), "wb", buffering=0) if args.output else None
    try:
        with _terminate_as_interrupt() as terminated:
            summary = recognise_media(media, recognizer, output, records, viewer)
    finally:
        if records is not None:
            records.close()
        if viewer is not None:
            viewer.close()
    lines = summary.lines()
    if media.failed:
        lines.append(f"unreadable files skipped: {len(media.failed)} ({', '.join(media.failed[:5])}"
                     f"{' ...' if len(media.failed) > 5 else ''})")
    if args.output:
        lines.append(f"wrote {len(output.written)} annotated {'frames' if output.path is None else 'video'} "
                     f"and {os.path.join(args.output, 'faces.jsonl')}")
    sys.stdout.write("\n".join(lines) + "\n")
    if terminated:
        return 128 + signal.SIGTERM
    return 130 if summary.interrupted else 0


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[List[int]]:
    """SIGTERM (``kill PID``, a container or service stopping) ends a run as Ctrl-C does.

    The video is finalised, ``faces.jsonl`` ends with the last whole frame and the report is printed.
    Yields a list that holds the signal once it has arrived. Outside the main thread (where Python
    cannot install handlers) SIGTERM keeps its default action.
    """
    received: List[int] = []

    def handler(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
