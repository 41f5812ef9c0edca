"""``insightgluon ijb``: IJB-B / IJB-C evaluation, computed as InsightFace computes it.

    insightgluon ijb --model model/r100,1 --data-root /data/IJB_release --target IJBC --features r100-ijbc.npy
    insightgluon ijb --features r100-ijbc.npy --data-root /data/IJB_release --target IJBC --roc roc.png

Prints ``TAR@FAR=1e-04: 96.28`` for FAR 1e-6 ... 1e-1 (1:1 template verification), then the 1:N
figures of both definitions in use (``closed-set ...``: gallery G1 and G2 together, as ijb_1n.py;
``open-set ...``: each gallery alone and their mean, as ijb_evals.py). The data are licensed and
users bring them: see docs/EVALUATION.md.
"""
import argparse
import logging
import sys
from typing import List, Optional

from insightgluon.errors import ConfigError
from insightgluon.outputs import output_file

LOG = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from insightgluon.cli.verify import add_dtype_argument, add_engine_argument

    p = argparse.ArgumentParser(prog="insightgluon ijb", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default="", help="prefix,epoch, model.onnx, model.xml or backbone.pth (omit to evaluate --features)")
    p.add_argument("--data-root", required=True, help="folder holding IJBC/ (or IJBB/) with loose_crop/ and meta/")
    p.add_argument("--target", default="IJBC", choices=("IJBC", "IJBB"))
    p.add_argument("--features", default="", help="image features .npy: written as computed (a killed run "
                   "resumes), or read when no --model is given (rows in meta order: crop then mirror)")
    add_engine_argument(p, "auto")
    add_dtype_argument(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per forward (default 64)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="F0: the crop alone, not crop + mirror")
    p.add_argument("--no-detector-score", dest="detector_score", action="store_false",
                   help="D0: do not weight image features by the detector's score")
    p.add_argument("--normalise-images", dest="normalise", action="store_true",
                   help="N1 of ijb_evals.py: L2-normalise each image feature before templates")
    p.add_argument("--no-1n", dest="one_to_n", action="store_false", help="1:1 only")
    p.add_argument("--roc", default="", help="draw the 1:1 ROC to this PNG")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    import os
    import tempfile

    from insightgluon.eval import ijb

    args = build_parser().parse_args(argv)
    if not args.model and not args.features:
        raise ConfigError("give --model (to compute image features) or --features (to evaluate saved ones)")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.roc:
        output_file(args.roc, "--roc")
    if args.model and args.features:
        output_file(args.features, "--features")
    files = ijb.layout(args.data_root, args.target)
    meta = ijb.read_image_meta(files.face_tid_mid, files.name_5pts_score)
    LOG.info("%s: %d images of %d templates", files.face_tid_mid, len(meta.names), len(set(meta.templates.tolist())))
    if args.model:
        from insightgluon.engines import load_embedding_model
        from insightgluon.precision import check_dtype

        model = load_embedding_model(args.model, engine=args.engine, image_hw=(112, 112),
                                     dtype=check_dtype(args.dtype, ["cpu(0)"]))
        LOG.info("%s runs as %s", args.model, model.describe())
        model.block.hybridize(static_alloc=True, static_shape=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = args.features or os.path.join(tmp, "features.npy")
            ijb.compute_features(model.block, files.images, meta, path, args.batch_size, source=files.name_5pts_score)
            results = ijb.evaluate(files, meta, path, args.flip, args.normalise, args.detector_score, args.one_to_n)
    else:
        ijb.load_features(args.features, len(meta.names))  # its shape, before the work
        results = ijb.evaluate(files, meta, args.features, args.flip, args.normalise, args.detector_score,
                               args.one_to_n)
    sys.stdout.write("\n".join(results.lines()) + "\n")
    if args.roc:
        from insightgluon.eval.plots import save_ijb_roc

        save_ijb_roc(results.labels, results.scores, args.roc, title=f"{args.target} 1:1")
        LOG.info("wrote %s", args.roc)
    return 0
