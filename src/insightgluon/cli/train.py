"""``insightgluon train`` (= ``train_softmax.py``): the legacy flags, yaml configs, distributed launch.

Precedence: field defaults < yaml files (``--config a.yml`` and ``@b.yml``, in
order) < flags typed on the command line.
"""
import argparse
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from insightgluon.config import TrainConfig, coerce
from insightgluon.errors import ConfigError

logger = logging.getLogger("insightgluon.train")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one flag per :class:`TrainConfig` knob, grouped as in ``--help``."""
    parser = argparse.ArgumentParser(
        prog="insightgluon train",
        description="Train a face-recognition network (flags of the 2018 train_softmax.py).",
        epilog="Values may also come from yaml files: --config a.yml or @a.yml (keys are the dest "
               "names, e.g. per_batch_size: 64); flags typed here win. See docs/TRAINING.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups: Dict[str, Any] = {}
    for f in TrainConfig.knobs():
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kwargs: Dict[str, Any] = {"dest": f.name, "help": meta["help"], "default": f.default}
        if f.type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _typed(f)
            kwargs["metavar"] = f.name.upper()
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
            if "nargs" in meta:
                kwargs.update(nargs=meta["nargs"], const=meta["const"])
        group.add_argument(flag, **kwargs)
    dist = groups[TrainConfig.__dataclass_fields__["kvstore"].metadata["group"]]
    dist.add_argument("--launch-dist", type=int, default=0, metavar="N",
                      help="start a scheduler, --num-servers servers and N dist_sync workers on this "
                           "machine (loopback) running these flags")
    dist.add_argument("--num-servers", type=int, default=1, metavar="N", help="servers for --launch-dist")
    return parser


def _typed(f):
    def convert(text: str):
        try:
            return coerce(f, text, f"--{f.name.replace('_', '-')}")
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
    convert.__name__ = f.type.__name__ if isinstance(f.type, type) else "value"
    return convert


def split_config_files(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Pull ``--config FILE``, ``--config=FILE`` and ``@FILE`` out of ``argv``."""
    files, rest = [], []
    it = iter(argv)
    for token in it:
        if token.startswith("@") and len(token) > 1:
            files.append(token[1:])
        elif token == "--config":
            value = next(it, None)
            if value is None:
                raise ConfigError("--config needs a yaml file")
            files.append(value)
        elif token.startswith("--config="):
            files.append(token.split("=", 1)[1])
        else:
            rest.append(token)
    return files, rest


def read_yaml(path: str) -> Dict[str, Any]:
    """A yaml config as ``{field: value}`` (kebab-case keys accepted), checked against the knobs."""
    import yaml

    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}not valid yaml ({getattr(err, 'problem', None) or err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value, got {type(data).__name__}")
    fields = {f.name: f for f in TrainConfig.knobs()}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{path}: unknown key '{key}'")
        out[name] = coerce(fields[name], value, path)
    return out


def parse_config(argv: Optional[Sequence[str]] = None) -> Tuple[TrainConfig, argparse.Namespace]:
    """Parse flags and yaml files into an unresolved :class:`TrainConfig` (plus launcher options)."""
    files, rest = split_config_files(list(argv or []))
    parser = build_parser()
    from_files: Dict[str, Any] = {}
    for path in files:
        from_files.update(read_yaml(path))
    parser.set_defaults(**from_files)
    args = parser.parse_args(rest)
    values = {f.name: getattr(args, f.name) for f in TrainConfig.knobs()}
    values["config"] = ",".join(files)
    return TrainConfig(**values), args


def _worker_argv(argv: Sequence[str]) -> List[str]:
    """The command line for dist workers: without the launcher flags, with a dist kvstore."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in ("--launch-dist", "--num-servers"):
            skip = True
            continue
        if token.startswith(("--launch-dist=", "--num-servers=")):
            continue
        out.append(token)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``insightgluon train``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, args = parse_config(argv)
    if args.launch_dist:
        from insightgluon.train.distributed import launch_local

        worker_argv = _worker_argv(argv)
        if not cfg.kvstore.startswith("dist"):
            worker_argv += ["--kvstore", "dist_sync"]
        return launch_local(args.launch_dist, worker_argv, num_servers=args.num_servers)
    cfg = cfg.resolve()
    from insightgluon.train import train

    result = train(cfg)
    logger.info("trained %d batches (epoch %d); last loss %.4f", result.steps, result.epoch, result.last_loss)
    return 0
