"""``insightgluon align``: detect and align faces to 112x112 crops, optionally straight to a dataset.

Examples
--------
insightgluon align --input photos/ --output aligned/ --to-rec dataset/
insightgluon align --input orl_faces/ --output aligned/ --ext png     # any format OpenCV reads, e.g. .pgm
insightgluon align --layout lfw --input lfw/ --output lfw_aligned/
insightgluon align --layout landmarks --landmarks lfw_landmark.txt --input lfw/ --output lfw_aligned/
insightgluon align --layout megaface --list megaface_features_list.json_1000000_1 --input FlickrFinal2/ --output out/
"""
import argparse
import logging
import os
import sys
from typing import List, Optional

from insightgluon.align.layouts import LAYOUT_PRESETS, LAYOUTS, build_jobs
from insightgluon.align.pipeline import NO_FACE_ACTIONS, FaceAligner, run_jobs, with_crop_names
from insightgluon.errors import ConfigError
from insightgluon.outputs import output_dir, output_file

log = logging.getLogger(__name__)


def _floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _size(text: str) -> tuple:
    values = _floats(text)
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH, got {text!r}")
    return int(values[0]), int(values[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="insightgluon align", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="photo root (one sub-directory per identity)")
    p.add_argument("--output", required=True, help="aligned crops, mirroring the input tree and file names")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="input layout (default: landmarks if --landmarks is given, else folder)")
    p.add_argument("--landmarks", default="", help="landmark list replacing detection: LFW lfw_landmark.txt, "
                   "VGGFace2 bb_landmark/loose_landmark_*.csv or an InsightFace .lst")
    p.add_argument("--list", dest="image_list", default="",
                   help="facescrub/megaface: devkit image list (JSON 'path' array) or one path per line")
    p.add_argument("--image-size", type=_size, default=(112, 112), help="crop HEIGHT,WIDTH (112,96: SphereFace)")
    p.add_argument("--preset", choices=("lfw", "megaface", "deploy"), default=None,
                   help="legacy detector settings (default: megaface for facescrub/megaface, else lfw)")
    p.add_argument("--min-size", type=float, default=None, help="override the preset's smallest face, pixels")
    p.add_argument("--threshold", type=_floats, default=None, help="override the three stage thresholds")
    p.add_argument("--factor", type=float, default=None, help="override the pyramid scale factor")
    p.add_argument("--margin", type=int, default=44, help="margin of the bounding-box fallback crop")
    p.add_argument("--no-face", choices=NO_FACE_ACTIONS, default="center",
                   help="photo without a face: legacy centre crop, or skip it")
    p.add_argument("--batch-size", type=int, default=16, help="photos detected together")
    p.add_argument("--engine", choices=("auto", "mxnet", "openvino"), default="auto",
                   help="what runs MTCNN's three networks: OpenVINO (the same boxes, faster on a CPU), "
                        "MXNet, or auto (OpenVINO where it is installed)")
    p.add_argument("--ext", default="", help="format of the crops (jpg, png, bmp, pgm, ppm, tif, webp, ...); "
                   "default: each photo's own format when it can hold a crop, else jpg")
    p.add_argument("--quality", type=int, default=95, help="quality of JPEG and WebP crops")
    p.add_argument("--report", default="", help="faces-not-found report (default OUTPUT/align_report.tsv)")
    p.add_argument("--lst", default="", help="legacy .lst of the crops (default OUTPUT/aligned.lst when "
                   "the input has identity sub-directories)")
    p.add_argument("--pairs", default="", help="lfw: pairs.txt to pack with --bin")
    p.add_argument("--bin", default="", help="lfw: write the aligned pairs as this .bin verification pack")
    p.add_argument("--to-rec", nargs="?", const="", default=None, metavar="DIR",
                   help="also write train.rec/train.idx/property (to DIR, default OUTPUT)")
    return p


def _detector(args):
    from insightgluon.align.mtcnn import MTCNN

    preset = args.preset or LAYOUT_PRESETS[args.layout]
    overrides = {k: v for k, v in (("min_size", args.min_size), ("thresholds", args.threshold),
                                   ("factor", args.factor)) if v is not None}
    return MTCNN.from_preset(preset, engine=args.engine, **overrides)


def _check_outputs(args) -> str:
    """Every file and folder this run will write, checked before the first photo; returns the report path."""
    from insightgluon.align.export import crop_pairs
    from insightgluon.data.image import crop_extension

    crop_extension("", args.ext)  # a bad --ext fails now, not after the alignment
    output_dir(args.output, "--output")
    report = output_file(args.report or os.path.join(args.output, "align_report.tsv"), "--report")
    if args.lst:
        output_file(args.lst, "--lst")
    if args.bin:
        output_file(args.bin, "--bin")
        crop_pairs(args.pairs, args.output, args.ext)  # a bad pairs file fails now too
    if args.to_rec:
        output_dir(args.to_rec, "--to-rec")
    return report


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.layout = args.layout or ("landmarks" if args.landmarks else "folder")
    if args.landmarks and args.layout != "landmarks":
        raise ConfigError(f"--landmarks is for --layout landmarks, not {args.layout}")
    if bool(args.pairs) != bool(args.bin):
        raise ConfigError("--pairs and --bin go together")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    report = _check_outputs(args)
    jobs = with_crop_names(build_jobs(args.layout, args.input, args.landmarks, args.image_list), args.ext)
    needs_detector = any(job.landmarks is None for job in jobs)
    aligner = FaceAligner(_detector(args) if needs_detector else None, args.image_size, args.margin, args.no_face)
    counts = run_jobs(jobs, args.output, aligner, report, args.batch_size, args.quality)
    sys.stdout.write(f"{len(jobs)} photos: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                     + f"; report: {report}\n")
    _write_outputs(args, jobs)
    return 0


def _write_outputs(args, jobs) -> None:
    from insightgluon.align import export

    has_identities = all(job.identity for job in jobs)
    if args.lst or (has_identities and args.layout != "megaface"):
        lst = args.lst or os.path.join(args.output, "aligned.lst")
        sys.stdout.write(f"wrote {lst}: {export.write_lst(lst, jobs, args.output)} crops\n")
    if args.bin:
        pairs = export.write_pairs_bin(args.bin, args.pairs, args.output, args.image_size, args.ext)
        sys.stdout.write(f"wrote {args.bin}: {pairs} pairs\n")
    if args.to_rec is not None:
        rec_dir = args.to_rec or args.output
        prop = export.write_rec(rec_dir, jobs, args.output, args.image_size)
        sys.stdout.write(f"wrote {rec_dir}: train.rec/train.idx/property, {prop.num_classes} identities\n")
