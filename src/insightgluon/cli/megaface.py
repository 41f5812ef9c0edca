"""``insightgluon megaface ACTION``: MegaFace features, noise removal and evaluation.

Actions:
  gen            embed FaceScrub / MegaFace images into devkit feature files
  remove-noises  apply the InsightFace noise lists (513-dim cleaned features)
  evaluate       rank-1..k identification (CMC) and TAR@FAR=1e-6, 10..1M distractors
  devkit         run the official devkit's run_experiment.py on the same features
  identify       1:N evaluation on your own identity folder (gallery/probe split)
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from typing import List, Optional

from insightgluon.errors import ConfigError, DataFormatError
from insightgluon.outputs import output_dir, output_file

LOG = logging.getLogger(__name__)


def _common_model_args(p: argparse.ArgumentParser) -> None:
    from insightgluon.cli.verify import add_dtype_argument, add_engine_argument

    p.add_argument("--model", required=True,
                   help="prefix,epoch[|prefix2,epoch2] (models concatenated), model.onnx, model.xml or backbone.pth")
    p.add_argument("--layer", default="fc1", help="embedding layer (default fc1)")
    p.add_argument("--image-size", "--image_size", default="112,112", help="H,W (or legacy 3,H,W)")
    p.add_argument("--batch-size", "--batch_size", type=int, default=32, help="images per forward")
    p.add_argument("--ctx", default="", help="devices: cpu, cpu:0,cpu:1, gpu:0")
    p.add_argument("--gpu", default="", help="legacy GPU ids, e.g. 0")
    add_engine_argument(p, "auto")
    add_dtype_argument(p)


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="insightgluon megaface", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=__doc__.split("\n\n", 1)[1])
    sub = top.add_subparsers(dest="action", metavar="ACTION", required=True)
    g = sub.add_parser("gen", help="write devkit feature files")
    _common_model_args(g)
    g.add_argument("--algo", default="insightface", help="algorithm name in the file names")
    g.add_argument("--facescrub-lst", required=True, help=".lst or path list of aligned FaceScrub images")
    g.add_argument("--megaface-lst", default="", help=".lst or path list of aligned MegaFace images")
    g.add_argument("--facescrub-root", default="", help="prefix of relative FaceScrub paths (default: list dir)")
    g.add_argument("--megaface-root", default="", help="prefix of relative MegaFace paths (default: list dir)")
    g.add_argument("--output", required=True, help="writes OUTPUT/facescrub/... and OUTPUT/megaface/...")
    g.add_argument("--skip", type=int, default=0, help="skip the first N MegaFace images (resume)")
    g.add_argument("--mf", type=int, default=1, help="0: FaceScrub only")
    r = sub.add_parser("remove-noises", help="clean features with the noise lists")
    for flag in ("facescrub-noises", "megaface-noises", "facescrub-lst", "megaface-lst", "facescrub-feature-dir",
                 "megaface-feature-dir", "facescrub-feature-dir-out", "megaface-feature-dir-out"):
        r.add_argument(f"--{flag}", required=True)
    r.add_argument("--suffix", required=True, help="input file suffix, e.g. r100_112x112")
    r.add_argument("--algo", default="", help="output suffix (default: --suffix)")
    r.add_argument("--seed", type=int, default=727, help="seed of the noisy-probe jitter")
    for name, helptext in (("evaluate", "CMC and TAR@FAR computed here"), ("devkit", "official run_experiment.py")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("distractor_dir", help="MegaFace feature folder")
        e.add_argument("probe_dir", help="FaceScrub feature folder (one sub-folder per identity)")
        e.add_argument("file_ending", help="feature file ending, e.g. _r100.bin")
        e.add_argument("out_root", nargs="?" if name == "evaluate" else None, default="",
                       help="result folder")
        e.add_argument("-s", "--sizes", default="10,100,1000,10000,100000,1000000", help="distractor counts")
    ev = sub.choices["evaluate"]
    ev.add_argument("--max-rank", type=int, default=10)
    ev.add_argument("--far", type=float, default=1e-6)
    ev.add_argument("--fp16", action="store_true", help="hold distractors as float16 (half the memory)")
    ev.add_argument("--chunk-size", type=int, default=4096)
    dk = sub.choices["devkit"]
    dk.add_argument("--devkit-dir", required=True, help="devkit 'experiments' folder with run_experiment.py")
    dk.add_argument("-p", "--probe-list", default="", help="templatelists/facescrub_features_list.json")
    dk.add_argument("--python", default="python2", help="interpreter for the devkit (it is Python 2)")
    i = sub.add_parser("identify", help="1:N on an identity folder")
    _common_model_args(i)
    i.add_argument("--data", required=True, help="folder with one sub-folder of aligned images per identity")
    i.add_argument("--distractors", default="", help="folder of extra non-matching gallery images")
    i.add_argument("--gallery-per-id", type=int, default=1, help="images per identity in the gallery")
    i.add_argument("--seed", type=int, default=0, help="seed of the gallery/probe split")
    i.add_argument("--max-rank", type=int, default=10)
    i.add_argument("--json", default="", help="write the result here")
    return top


def _size(text: str):
    parts = [int(s) for s in text.split(",") if s.strip().isdigit()]
    if len(parts) == 3:
        parts = parts[1:]
    if len(parts) != 2 or min(parts) <= 0:
        raise ConfigError(f"--image-size '{text}': expected H,W such as 112,112")
    return tuple(parts)


def _embedders(args) -> list:
    from insightgluon.cli.verify import check_input_size, compute_dtype, expand_model_spec, model_label
    from insightgluon.engines import load_embedding_model
    from insightgluon.eval.embed import Embedder, parse_ctx

    ctx = parse_ctx(args.ctx, args.gpu)
    dtype = compute_dtype(args, ctx)
    out = []
    for prefix, epoch in expand_model_spec(args.model):
        model = load_embedding_model(prefix, epoch, layer=args.layer, ctx=ctx, engine=args.engine,
                                     image_hw=_size(args.image_size), dtype=dtype)
        LOG.info("%s runs as %s", model_label(prefix, epoch), model.describe())
        if epoch is None:  # an exported model's input size is fixed in the file
            check_input_size(model, prefix, _size(args.image_size))
        model.block.hybridize(static_alloc=True, static_shape=True)
        out.append(Embedder(model.block, ctx, args.batch_size, flip=True))
    return out


def _write_json(path: str, payload: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def _resolve(images: List[str], root: str) -> List[str]:
    return [p if os.path.isabs(p) else os.path.join(root, p) for p in images]


def run_gen(args) -> int:
    from insightgluon.eval import megaface as M

    output_dir(args.output, "--output")
    size = _size(args.image_size)
    suffix = f"{args.algo}_{size[0]}x{size[1]}"
    embedders = _embedders(args)
    sets = [("facescrub", args.facescrub_lst, args.facescrub_root, 2, 0)]
    if args.mf and args.megaface_lst:
        sets.append(("megaface", args.megaface_lst, args.megaface_root, 3, args.skip))
    for name, lst, root, depth, skip in sets:
        images = _resolve(M.read_image_list(lst), root or os.path.dirname(os.path.abspath(lst)))[skip:]
        out_root = os.path.join(args.output, name)
        jobs = ((img, M.feature_path(out_root, img, suffix, depth)) for img in images)
        written, skipped = M.generate_features(embedders, jobs, size, total=len(images))
        sys.stdout.write(f"{name}: {written} features written to {out_root}, {skipped} images skipped\n")
    return 0


def run_remove_noises(args) -> int:
    from insightgluon.eval import megaface as M

    output_dir(args.facescrub_feature_dir_out, "--facescrub-feature-dir-out")
    output_dir(args.megaface_feature_dir_out, "--megaface-feature-dir-out")
    counts = M.remove_noises(M.read_image_list(args.facescrub_lst), M.read_image_list(args.megaface_lst),
                             M.read_noise_list(args.facescrub_noises), M.read_noise_list(args.megaface_noises),
                             args.facescrub_feature_dir, args.facescrub_feature_dir_out,
                             args.megaface_feature_dir, args.megaface_feature_dir_out,
                             args.suffix, args.algo or args.suffix, seed=args.seed)
    sys.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
    return 0


def _find(root: str, ending: str) -> List[str]:
    if not os.path.isdir(root):
        raise DataFormatError(f"{root}: no such feature folder")
    found = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(ending)]
    if not found:
        raise DataFormatError(f"{root}: no feature files ending in '{ending}'")
    return sorted(found)


def run_evaluate(args) -> int:
    import numpy as np

    from insightgluon.eval.identification import megaface_identification
    from insightgluon.eval.megaface import load_features

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.out_root:
        output_dir(args.out_root, "out_root")
    probe_files = _find(args.probe_dir, args.file_ending)
    labels = [os.path.basename(os.path.dirname(p)) for p in probe_files]
    probes = load_features(probe_files, progress="probes")
    distractors = load_features(_find(args.distractor_dir, args.file_ending),
                                dtype=np.float16 if args.fp16 else np.float32, progress="distractors")
    sizes = [s for s in sizes if s <= len(distractors)] or [len(distractors)]
    res = megaface_identification(probes, labels, distractors, sizes, args.max_rank, args.far, args.chunk_size)
    sys.stdout.write(f"{len(probe_files)} probes of {len(set(labels))} identities, "
                     f"{len(distractors)} distractors\n" + "\n".join(res.lines()) + "\n")
    if args.out_root:
        _write_json(os.path.join(args.out_root, "megaface_results.json"), res.to_dict())
    return 0


def run_devkit(args) -> int:
    output_dir(args.out_root, "out_root")
    script = os.path.join(args.devkit_dir, "run_experiment.py")
    if not os.path.isfile(script):
        raise ConfigError(f"{script}: not found; download the MegaFace devkit (see megaface/README.md)")
    cmd = [args.python, script, args.distractor_dir, args.probe_dir, args.file_ending, args.out_root,
           "-s", *args.sizes.split(",")]
    if args.probe_list:
        cmd += ["-p", args.probe_list]
    LOG.info("running %s", " ".join(cmd))
    try:
        return subprocess.call(cmd, cwd=args.devkit_dir)
    except FileNotFoundError:
        raise ConfigError(f"--python '{args.python}': interpreter not found") from None


def run_identify(args) -> int:
    import numpy as np

    from insightgluon.eval.embed import l2_normalize
    from insightgluon.eval.identification import identify_1n
    from insightgluon.eval.megaface import _read_rgb

    size = _size(args.image_size)
    if args.json:
        output_file(args.json, "--json")
    gal, probe, dis = split_identity_folder(args.data, args.gallery_per_id, args.seed, args.distractors)
    embedders = _embedders(args)

    def embed(items):
        imgs = [_read_rgb(p, size) for p, _ in items]
        keep = [k for k, im in enumerate(imgs) if im is not None]
        batch = np.stack([imgs[k] for k in keep])
        feats = l2_normalize(np.concatenate([e.embed(batch)[0] for e in embedders], axis=1))
        return feats, np.array([items[k][1] for k in keep])

    g, gl = embed(gal + dis)
    p, pl = embed(probe)
    res = identify_1n(g, gl, p, pl, max_rank=args.max_rank)
    tars = " ".join(f"{f:g}={'n/a' if t is None else f'{t:.5f}'}" for f, t in res["tar_at_far"].items())
    sys.stdout.write(f"gallery {res['num_gallery']} ({len(dis)} distractors), probes {res['num_probes']}\n"
                     f"rank-1: {res['rank1']:.5f} rank-5: {res['rank5']:.5f}\nTAR@FAR: {tars}\n")
    if args.json:
        _write_json(args.json, {**res, "tar_at_far": {f"{k:g}": v for k, v in res["tar_at_far"].items()}})
    return 0


def split_identity_folder(root: str, gallery_per_id: int = 1, seed: int = 0, distractors: str = ""):
    """``(gallery, probes, distractors)`` lists of ``(path, label)`` from ``root/<identity>/*``.

    Each identity with more than ``gallery_per_id`` images puts that many
    (chosen with ``seed``) in the gallery and the rest in the probes.
    """
    import numpy as np

    from insightgluon.data.image import IMAGE_EXTENSIONS as exts

    if not os.path.isdir(root):
        raise DataFormatError(f"{root}: no such identity folder")
    rng = np.random.default_rng(seed)
    gallery, probes = [], []
    for label, ident in enumerate(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))):
        files = sorted(os.path.join(root, ident, f) for f in os.listdir(os.path.join(root, ident))
                       if f.lower().endswith(exts))
        if len(files) <= gallery_per_id:
            continue
        order = rng.permutation(len(files))
        gallery += [(files[k], label) for k in order[:gallery_per_id]]
        probes += [(files[k], label) for k in order[gallery_per_id:]]
    if not probes:
        raise DataFormatError(f"{root}: no identity has more than {gallery_per_id} image(s)")
    extra = []
    if distractors:
        if not os.path.isdir(distractors):
            raise DataFormatError(f"{distractors}: no such distractor folder")
        extra = [(os.path.join(d, f), -1) for d, _, fs in os.walk(distractors) for f in sorted(fs)
                 if f.lower().endswith(exts)]
    return gallery, probes, extra


ACTIONS = {"gen": run_gen, "remove-noises": run_remove_noises, "evaluate": run_evaluate,
           "devkit": run_devkit, "identify": run_identify}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return ACTIONS[args.action](args)
