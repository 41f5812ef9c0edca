"""``insightgluon train`` (= ``train_softmax.py``): the legacy flags, yaml configs, distributed launch.

Precedence: field defaults < yaml files (``--config a.yml`` and ``@b.yml``, in
order) < flags typed on the command line. Without ``--data-dir`` the run trains
on the synthetic faces (see :mod:`insightgluon.data.cache`); without a GPU, on
the CPU. Devices and the checkpoint folder are checked before any data is made.
"""
import argparse
import dataclasses
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from insightgluon.config import TrainConfig, coerce
from insightgluon.errors import ConfigError
from insightgluon.outputs import output_prefix

logger = logging.getLogger("insightgluon.train")

# Per-device batch on CPU contexts when none is chosen: r100 then needs about 5 GB, and the
# multiple of 5 keeps the triplet loss's 5 images per identity possible.
CPU_PER_BATCH_SIZE = 20


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
                      help="start a scheduler, --num-servers servers and N dist_sync workers running these "
                           "flags: on this machine (loopback), or over ssh on the hosts of --hosts")
    dist.add_argument("--num-servers", type=int, default=1, metavar="N", help="servers for --launch-dist")
    dist.add_argument("--hosts", default="", metavar="HOSTFILE",
                      help="one host per line ('HOST', 'user@HOST', 'HOST slots=N'): the scheduler on the first, "
                           "servers and workers round-robin; the same Python, folder and data path on each")
    dist.add_argument("--ssh-command", default="", metavar="CMD",
                      help="ssh as the launcher runs it (default: ssh in batch mode with 5 s keep-alives); "
                           "e.g. 'ssh -i key -p 2222'")
    dist.add_argument("--dist-timeout", type=float, default=0.0, metavar="SECONDS",
                      help="stop the job when no worker finishes a batch for this long (0: only lost processes "
                           "and hosts stop it)")
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
    # Which knobs the user chose (in a file or typed), so machine-dependent defaults leave them alone.
    unset = object()
    probe = build_parser()
    probe.set_defaults(**{f.name: unset for f in TrainConfig.knobs()})
    typed = vars(probe.parse_args(rest))
    args.chosen = set(from_files) | {name for name, value in typed.items() if value is not unset}
    return TrainConfig(**values), args


# Flags of the launcher itself, not passed on to the workers.
LAUNCHER_FLAGS = ("--launch-dist", "--num-servers", "--hosts", "--ssh-command", "--dist-timeout")


def _worker_argv(argv: Sequence[str]) -> List[str]:
    """The command line for dist workers: without the launcher flags, with a dist kvstore."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token in LAUNCHER_FLAGS:
            skip = True
            continue
        if token.startswith(tuple(f"{flag}=" for flag in LAUNCHER_FLAGS)):
            continue
        out.append(token)
    return out


def check_devices(cfg: TrainConfig, env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Check the requested devices against the GPUs MXNet sees; returns the environment to resolve with.

    ``--gpus``/``--ctx gpu...`` beyond the GPUs present is a one-line error. A
    ``CUDA_VISIBLE_DEVICES`` inherited from the shell on a machine without GPUs
    is ignored with a warning, and the run trains on the CPU.
    """
    import mxnet as mx

    from insightgluon.train.distributed import parse_contexts

    env = dict(os.environ if env is None else env)
    available = mx.context.num_gpus()
    wanted = [c for c in parse_contexts(cfg.gpus, cfg.ctx, env) if c.startswith("gpu")]
    flag = "--ctx" if cfg.ctx.strip() else "--gpus" if cfg.gpus.strip() else ""
    if wanted and not flag and not available:
        logger.warning("CUDA_VISIBLE_DEVICES=%s, but MXNet sees no GPU: training on the CPU",
                       env.pop("CUDA_VISIBLE_DEVICES"))
        return env
    highest = max((int(c[4:-1]) for c in wanted), default=-1)
    if highest >= available:
        value = cfg.ctx if flag == "--ctx" else cfg.gpus or env.get("CUDA_VISIBLE_DEVICES", "")
        seen = "no GPU (a CPU-only MXNet build or no CUDA device)" if not available else f"{available} GPU(s)"
        hint = "leave it out to train on the CPU" if not available else "use ids below that"
        raise ConfigError(f"{flag or 'CUDA_VISIBLE_DEVICES'} {value}: MXNet sees {seen} on this machine; {hint}")
    return env


def cpu_defaults(cfg: TrainConfig, chosen: set, env: Mapping[str, str]) -> TrainConfig:
    """On CPU contexts, a per-device batch a CPU can hold unless the user chose one.

    The legacy 128 is per GPU; r100 at 128 needs about 20 GB of memory on a CPU.
    """
    from insightgluon.train.distributed import parse_contexts

    on_cpu = all(c.startswith("cpu") for c in parse_contexts(cfg.gpus, cfg.ctx, env))
    if not on_cpu or "per_batch_size" in chosen:
        return cfg
    logger.info("--per-batch-size %d on the CPU (the legacy %d is per GPU and would need tens of GB "
                "for large networks); pass --per-batch-size to choose", CPU_PER_BATCH_SIZE, cfg.per_batch_size)
    return dataclasses.replace(cfg, per_batch_size=CPU_PER_BATCH_SIZE)


def _describe_devices(cfg: TrainConfig) -> str:
    if any(c.startswith("gpu") for c in cfg.contexts):
        return f"devices: {', '.join(cfg.contexts)}"
    how = "as asked" if cfg.ctx.strip() else "no GPU given or found"
    return (f"devices: training on the CPU ({how}): {', '.join(cfg.contexts)} with "
            f"{os.environ.get('OMP_NUM_THREADS', '?')} OpenMP threads; large networks take minutes per "
            "speed line here")


def with_data(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with a data directory: the one given (it must exist), else the default data.

    See :mod:`insightgluon.data.cache` for the default (the synthetic faces, generated once).
    """
    if cfg.data_dir:
        if not os.path.isdir(cfg.data_dir):
            raise ConfigError(f"--data-dir {cfg.data_dir}: no such folder (leave --data-dir out to train on "
                              "the synthetic faces)")
        return cfg
    from insightgluon.data.cache import default_data

    data = default_data()
    logger.info("%s", data.describe())
    return dataclasses.replace(cfg, data_dir=data.path)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``insightgluon train``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, args = parse_config(argv)
    if args.hosts and not args.launch_dist:
        raise ConfigError("--hosts: say how many workers to start with --launch-dist N")
    env = check_devices(cfg)
    cfg = cpu_defaults(cfg, args.chosen, env)
    if not cfg.dry_run:
        output_prefix(cfg.prefix)
    given_data = bool(cfg.data_dir)
    cfg = with_data(cfg)
    if args.launch_dist:
        import shlex

        from insightgluon.train import launcher

        hosts = launcher.read_hostfile(args.hosts) if args.hosts else None
        worker_argv = _worker_argv(argv) + ([] if given_data else ["--data-dir", cfg.data_dir])
        if not cfg.kvstore.startswith("dist"):
            worker_argv += ["--kvstore", "dist_sync"]
        return launcher.launch(args.launch_dist, worker_argv, num_servers=args.num_servers, hosts=hosts,
                               ssh=shlex.split(args.ssh_command) if args.ssh_command else None,
                               progress_timeout=args.dist_timeout)
    cfg = cfg.resolve(env=env)
    logger.info("%s", _describe_devices(cfg))
    from insightgluon.train import train

    result = train(cfg)
    logger.info("trained %d batches (epoch %d); last loss %.4f", result.steps, result.epoch, result.last_loss)
    return 0
