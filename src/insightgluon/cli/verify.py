"""``insightgluon verify``: verification accuracy of checkpoints on ``.bin`` pair sets.

Prints the legacy lines (``[lfw]XNorm: ...``, ``[lfw]Accuracy-Flip: ...``,
``Max of [lfw] is ...``) followed by the threshold, AUC, EER, TAR@FAR and
per-class accuracy; optionally writes a JSON report and ROC / worst-pair PNGs.

Model notation (``--model``), items separated by ``|``:
``prefix,epoch`` one checkpoint; a bare ``epoch`` re-uses the previous prefix
(the legacy ``prefix,e1|e2``); a bare ``prefix`` means every epoch saved
under it; ``model.onnx`` or ``model.xml`` (OpenVINO IR) an exported model;
``backbone.pth`` an arcface_torch state dict (converted as ``insightgluon convert`` does).
"""
import argparse
import glob
import json
import logging
import os
import re
import sys
import tempfile
from typing import List, Optional, Tuple

from insightgluon.errors import CheckpointError, ConfigError, DataFormatError
from insightgluon.outputs import output_dir, output_file

LOG = logging.getLogger(__name__)


def expand_model_spec(spec: str) -> List[Tuple[str, Optional[int]]]:
    """``p,1|2|q,5`` -> ``[(p, 1), (p, 2), (q, 5)]``; ``p`` -> every ``p-NNNN.params``.

    An exported model (``x.onnx``, ``x.xml``) or a PyTorch state dict (``x.pth``) comes back as ``(path, None)``.
    """
    from insightgluon.convert.source import TORCH_SUFFIXES
    from insightgluon.model_io import parse_model_spec

    models, prefix = [], None
    for item in filter(None, (s.strip() for s in spec.split("|"))):
        if item.lower().endswith((".onnx", ".xml") + TORCH_SUFFIXES):
            models.append((item, None))
        elif re.fullmatch(r"\d+", item):
            if prefix is None:
                raise CheckpointError(f"model '{spec}': epoch '{item}' has no prefix before it")
            models.append((prefix, int(item)))
        elif "," not in item:
            found = sorted(int(m.group(1)) for m in (re.fullmatch(re.escape(item) + r"-(\d{4})\.params", p)
                                                     for p in glob.glob(glob.escape(item) + "-*.params")) if m)
            if not found:
                raise CheckpointError(f"{item}-*.params: no checkpoint epochs found")
            models += [(item, e) for e in found]
            prefix = item
        else:
            models += parse_model_spec(item)
            prefix = models[-1][0]
    if not models:
        raise CheckpointError(f"model '{spec}': expected 'prefix,epoch' (e.g. model/r100,1)")
    return models


ENGINE_HELP = ("auto: the fastest engine installed that runs the model here and passes its parity probe "
               "(openvino, then onnxruntime, then mxnet; the log says which). zoo: a checkpoint through the "
               "zoo network it provably is (2018 and model-zoo files included); graph: the checkpoint's own "
               "graph (its PReLU layers in the fast form); mxnet: zoo, else graph; onnxruntime, openvino: "
               "an ONNX/IR file, or a checkpoint exported to ONNX in a temporary folder (parity-checked)")


def add_engine_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--engine`` of the commands that embed faces with a model."""
    from insightgluon.engines import engine_choices

    parser.add_argument("--engine", default=default, choices=engine_choices(),
                        help=f"{ENGINE_HELP} (default: {default})")


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` of the commands that embed faces with a model."""
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="compute precision: fp32 (default); bf16 on CPUs with avx512_bf16/AMX (engines "
                             "openvino, zoo, graph); fp16 on GPUs (see docs/EVALUATION.md)")


def model_label(prefix: str, epoch: Optional[int]) -> str:
    """``prefix,epoch`` of a checkpoint, the path of an exported model."""
    return prefix if epoch is None else f"{prefix},{epoch}"


def check_input_size(model, label: str, size: Tuple[int, int]) -> None:
    """One line when an exported model's fixed input size is not the ``--image-size`` of the images."""
    if tuple(model.image_hw) != tuple(size):
        raise ConfigError(f"{label}: the model takes {model.image_hw[0]}x{model.image_hw[1]} images; "
                          f"--image-size is {size[0]},{size[1]}")


def compute_dtype(args, ctx) -> str:
    """MXNet's dtype for ``args.dtype`` on the devices ``ctx``; one-line error where unsupported."""
    from insightgluon.precision import check_dtype

    return check_dtype(args.dtype, [str(c) for c in ctx])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="insightgluon verify", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--model", required=True, help="prefix,epoch[|epoch2][|prefix2,epoch] (see below)")
    p.add_argument("--data-dir", required=True, help="folder holding <target>.bin files")
    p.add_argument("--target", default="lfw,cfp_fp,agedb_30", help="comma-separated .bin names")
    p.add_argument("--layer", default="fc1", help="embedding layer of the graph (default fc1)")
    add_engine_argument(p, "auto")
    add_dtype_argument(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per forward (default 32)")
    p.add_argument("--nfolds", type=int, default=10, help="cross-validation folds (default 10)")
    p.add_argument("--image-size", default="112,112", help="H,W of the decoded images")
    p.add_argument("--ctx", default="", help="devices: cpu, cpu:0,cpu:1, gpu:0 (default cpu)")
    p.add_argument("--gpu", default="", help="legacy: GPU ids, e.g. 0,1 (overrides --ctx)")
    p.add_argument("--json", default="", help="write every metric to this JSON file")
    p.add_argument("--roc-dir", default="", help="write <target>_roc.png and worst-pair galleries here")
    p.add_argument("--gallery-pairs", type=int, default=8, help="pairs per kind in the gallery PNG")
    return p


def _image_size(text: str) -> Tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(s.strip().isdigit() and int(s) > 0 for s in parts):
        raise ConfigError(f"--image-size '{text}': expected H,W such as 112,112")
    return int(parts[0]), int(parts[1])


def _write_json(path: str, payload: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from insightgluon.eval.embed import parse_ctx
    from insightgluon.engines import load_embedding_model
    from insightgluon.eval.verification import VerificationSet, verify_model

    if args.batch_size < 1 or args.nfolds < 2:
        raise ConfigError("--batch-size must be >= 1 and --nfolds >= 2")
    if args.json:
        output_file(args.json, "--json")
    if args.roc_dir:
        output_dir(args.roc_dir, "--roc-dir")
    size = _image_size(args.image_size)
    ctx = parse_ctx(args.ctx, args.gpu)
    dtype = compute_dtype(args, ctx)
    models = expand_model_spec(args.model)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    sets = []
    for name in targets:
        path = os.path.join(args.data_dir, f"{name}.bin")
        if not os.path.isfile(path):
            raise DataFormatError(f"{path}: no such verification set")
        sets.append(VerificationSet.load(path, image_size=size))
        LOG.info("loaded %s: %d pairs", path, len(sets[-1]))
    loaded = []
    for prefix, epoch in models:
        LOG.info("loading %s", model_label(prefix, epoch))
        model = load_embedding_model(prefix, epoch, layer=args.layer, ctx=ctx, engine=args.engine,
                                     image_hw=size, dtype=dtype)
        LOG.info("%s runs as %s", model_label(prefix, epoch), model.describe())
        if epoch is None:  # an exported model's input size is fixed in the file
            check_input_size(model, prefix, size)
        model.block.hybridize(static_alloc=True, static_shape=True)
        loaded.append(model)
    out = sys.stdout
    report = {"models": [{"prefix": p, "epoch": e, "layer": args.layer, "engine": n.engine, "dtype": n.dtype,
                          "results": {}} for (p, e), n in zip(models, loaded)],
              "max": {}}
    for vset in sets:
        results = []
        for (prefix, epoch), model, entry in zip(models, loaded, report["models"]):
            res = verify_model(model.block, vset, ctx, batch_size=args.batch_size, nfolds=args.nfolds)
            results.append((model_label(os.path.basename(prefix), epoch), res))
            if len(models) > 1:
                out.write(f"[{vset.name}]model: {model_label(prefix, epoch)}\n")
            out.write("\n".join(res.legacy_lines(f"[{vset.name}]") + res.extra_lines(f"[{vset.name}]")) + "\n")
            entry["results"][vset.name] = res.to_dict()
            if args.roc_dir:
                from insightgluon.eval.plots import save_worst_pairs

                name = os.path.basename(prefix) if epoch is None else f"{os.path.basename(prefix)}-{epoch:04d}"
                stem = f"{vset.name}_{name}_worst.png"
                save_worst_pairs(res, vset.images, os.path.join(args.roc_dir, stem), args.gallery_pairs)
        best = max(r.accuracy for _, r in results)
        report["max"][vset.name] = best
        out.write(f"Max of [{vset.name}] is {best:1.5f}\n")
        out.flush()
        if args.roc_dir:
            from insightgluon.eval.plots import save_roc

            save_roc(results, os.path.join(args.roc_dir, f"{vset.name}_roc.png"), title=vset.name)
    if args.json:
        _write_json(args.json, report)
        LOG.info("wrote %s", args.json)
    return 0
