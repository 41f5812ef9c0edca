"""Training configuration: every knob of the legacy ``train_softmax.py`` and more.

:class:`TrainConfig` is a frozen dataclass. Each *knob* field carries its
command-line flag (the legacy kebab-case spelling), a help text and a help
group in its metadata, so the command line, yaml files and the saved
configuration all use the same snake_case names. :meth:`TrainConfig.resolve`
derives everything that depends on the data and the machine (number of
classes, image size, devices, global batch, scaled lr steps, the SphereFace
overrides) exactly once and returns a new frozen instance; nothing changes it
afterwards.
"""
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from insightgluon.errors import ConfigError

logger = logging.getLogger(__name__)

# Legacy default lr steps (in global batches at a global batch of 512), REFERENCE §7.
SOFTMAX_LR_STEPS = (40000, 60000, 80000)
MARGIN_LR_STEPS = (100000, 140000, 160000)
LR_STEP_REFERENCE_BATCH = 512
# SphereFace on large datasets: the legacy script froze beta longer and decayed it slower.
SPHEREFACE_LARGE_CLASSES = 20000
SPHEREFACE_LARGE_OVERRIDE = {"beta_freeze": 5000, "gamma": 0.06}
# Losses that keep the short legacy schedule; every margin loss gets the long one.
SHORT_SCHEDULE_LOSSES = ("softmax", "triplet")
TRIPLET_IMAGES_PER_IDENTITY = 5


def knob(default: Any, help: str, group: str, flag: Optional[str] = None, **extra) -> Any:
    """A configuration field with its command-line flag and help text."""
    meta = {"help": help, "group": group, "flag": flag}
    meta.update(extra)
    return field(default=default, metadata=meta)


def derived(default: Any = None) -> Any:
    """A field filled by :meth:`TrainConfig.resolve`, never set by the user."""
    return field(default=default, metadata={"derived": True})


P, N, O, M, S, A, R, D = ("paths and control", "network", "optimiser and schedule", "margins and losses",
                          "SphereFace beta schedule", "augmentation and data", "runtime and logging",
                          "devices and distributed")


@dataclass(frozen=True)
class TrainConfig:
    """Every training knob (legacy flags of REFERENCE §1.1–1.2 plus new ones).

    Knob fields keep the legacy defaults. Derived fields (``loss``,
    ``num_classes``, ``global_batch`` ...) are ``None`` until :meth:`resolve`.
    """

    # --- paths and control
    data_dir: str = knob("", "dataset directory (train.rec, train.idx, property, *.bin); empty: the synthetic "
                         "faces, made once in $INSIGHTGLUON_DATA or ~/.cache/insightgluon", P)
    prefix: str = knob("../model/model", "checkpoint prefix: PREFIX-symbol.json, PREFIX-NNNN.params", P)
    pretrained: str = knob("", "initialise from checkpoint 'prefix,epoch', an arcface_torch backbone.pth or an "
                                "InsightFace ONNX model of --network (missing params re-initialised)", P)
    ckpt: int = knob(1, "0 never save; 1 save when highest; 2 always; 3 when highest, always as -0001", P,
                     choices=(0, 1, 2, 3))
    loss_type: str = knob("4", "loss: legacy number (0,1,2,4,5,12) or a name (arcface, cosface, ...)", M)
    verbose: int = knob(2000, "verify on the targets and apply the --ckpt policy every N batches", P)
    max_steps: int = knob(0, "stop after this many batches (0: no limit)", P)
    end_epoch: int = knob(100000, "stop at this epoch (one epoch = one pass over train.rec)", P)
    resume: str = knob("", "continue exactly from a training state: 'auto' (PREFIX-train.state) or a path", P,
                       nargs="?", const="auto")
    config: str = knob("", "yaml file of field: value pairs (also '@file.yml'); typed flags win", P)
    dry_run: bool = knob(False, "parameter-adjustment mode: train and log to the console, write no files", P)
    state_every: int = knob(0, "save the full training state every N batches (0: every --verbose batches)", P)
    # --- network
    network: str = knob("r50", "backbone name (r100, r50, y1, m1, p107, d121, ...)", N)
    version_se: int = knob(0, "squeeze-and-excitation units (1: on)", N)
    version_input: int = knob(1, "input block variant", N)
    version_output: str = knob("", "embedding head (E, GDC, ...); empty: the network's own, GDC for y1 "
                               "and E for the others", N)
    version_unit: int = knob(3, "residual unit variant", N)
    version_act: str = knob("prelu", "activation (prelu, relu, ...)", N)
    version_multiplier: float = knob(1.0, "width multiplier (MobileNet, MobileFaceNet, slim r-nets)", N)
    use_deformable: int = knob(0, "accepted for compatibility; unused (as in 2018)", N)
    emb_size: int = knob(512, "embedding width (fc1)", N)
    bn_mom: float = knob(0.9, "batch-norm momentum", N)
    dropout: float = knob(0.0, "dropout before the embedding layer (arcface_torch iresnet*; 2018 heads fix "
                               "their own)", N)
    dtype: str = knob("fp32", "compute precision: fp32; bf16 (CPUs with avx512_bf16/AMX); fp16 (GPUs, loss "
                      "scaling). Weights, optimiser and checkpoints stay fp32", N, choices=("fp32", "bf16", "fp16"))
    image_size: str = knob("112,112", "input 'H,W' (112,96 for SphereNet); empty: from the property file", N)
    # --- optimiser and schedule
    lr: float = knob(0.1, "base learning rate", O)
    lr_steps: str = knob("", "comma-separated batches where lr *= 0.1; empty: legacy default scaled by "
                         "512/global batch", O)
    lr_schedule: str = knob("step", "'step' (legacy) or 'poly' (polynomial decay to --max-steps)", O,
                            choices=("step", "poly"))
    warmup_steps: int = knob(0, "linear lr warm-up over this many batches", O)
    poly_power: float = knob(2.0, "exponent of the 'poly' schedule", O)
    wd: float = knob(0.0005, "weight decay (on *_weight and *_gamma, as the legacy optimiser)", O)
    mom: float = knob(0.9, "SGD momentum", O)
    per_batch_size: int = knob(128, "batch per device", O)
    fc7_wd_mult: float = knob(1.0, "weight-decay multiplier of the classifier fc7", O)
    fc7_lr_mult: float = knob(1.0, "learning-rate multiplier of the classifier fc7", O)
    fc7_no_bias: bool = knob(False, "softmax loss without fc7_bias", O)
    # --- margins and losses
    margin_m: float = knob(0.5, "angular margin m (ArcFace m2, CosFace m3 for loss 2)", M)
    margin_s: float = knob(64.0, "feature scale s", M)
    margin_a: float = knob(1.0, "combined margin m1 (multiplicative angular)", M)
    margin_b: float = knob(0.0, "combined margin m3 (additive cosine)", M)
    easy_margin: int = knob(0, "ArcFace: apply the margin only when cos(theta) > 0", M)
    ce_loss: bool = knob(False, "also log the plain cross-entropy of the margin logits", M)
    images_per_identity: int = knob(0, "identity-balanced batches (triplet); 0: 5 for triplet", M)
    triplet_alpha: float = knob(0.3, "triplet margin alpha", M)
    triplet_max_ap: float = knob(0.0, "triplet: skip anchor-positive pairs farther than this (0: off)", M)
    sample_rate: float = knob(0.0, "Partial FC: fraction of fc7 classes sampled per batch "
                              "(0: the loss default, 1 for every loss but partial-fc's 0.1)", M)
    sv_t: float = knob(1.2, "SV-softmax: weight t of hard negatives", M)
    focal_gamma: float = knob(2.0, "AM-focal: focusing exponent gamma", M)
    magface_la: float = knob(10.0, "MagFace: lower feature-norm bound l_a", M)
    magface_ua: float = knob(110.0, "MagFace: upper feature-norm bound u_a", M)
    magface_lm: float = knob(0.45, "MagFace: margin at l_a", M)
    magface_um: float = knob(0.8, "MagFace: margin at u_a", M)
    magface_lambda: float = knob(35.0, "MagFace: weight lambda_g of the norm regulariser", M)
    # --- SphereFace
    margin: int = knob(4, "SphereFace integer margin", S)
    beta: float = knob(1000.0, "SphereFace initial beta", S)
    beta_min: float = knob(5.0, "SphereFace minimum beta", S)
    beta_freeze: int = knob(0, "batches with frozen beta; lr steps are shifted by it", S)
    gamma: float = knob(0.12, "beta decay gamma", S)
    power: float = knob(1.0, "beta decay power", S)
    scale: float = knob(0.9993, "per-iteration beta decay of the L-Softmax op (kept for compatibility)", S)
    # --- augmentation and data
    rand_mirror: int = knob(1, "random horizontal flip", A)
    cutoff: int = knob(0, "random grey square of this side (p=0.5)", A)
    color: int = knob(0, "1: colour jitter; 2: also JPEG re-compression", A)
    images_filter: int = knob(0, "drop identities with fewer images than this", A)
    target: str = knob("lfw,cfp_fp,agedb_30", "verification sets DATA_DIR/NAME.bin", A)
    data_workers: int = knob(1, "decoding worker processes (0: in the training process)", A)
    val_batch_size: int = knob(64, "batch size of the verification forward pass", A)
    verify_first: bool = knob(False, "also verify before the first batch (shows the chance level)", A)
    # --- runtime and logging
    frequent: int = knob(20, "speed/loss log line every N batches", R)
    seed: int = knob(0, "seed of data order, augmentation, initialisation and dropout", R)
    tensorboard: int = knob(1, "write TensorBoard scalars to PREFIX_DIR/tensorboard (0: off)", R)
    hybridize: int = knob(1, "hybridize backbone and head (static_alloc/static_shape)", R)
    # --- devices and distributed
    gpus: str = knob("", "GPU ids '0,1' (default: CUDA_VISIBLE_DEVICES, else CPU)", D)
    ctx: str = knob("", "explicit contexts: 'cpu:2', 'cpu(0),cpu(1)', 'gpu:4'", D)
    kvstore: str = knob("device", "gradient aggregation: local, device, dist_sync, dist_device_sync", D,
                        choices=("local", "device", "dist_sync", "dist_device_sync"))

    # --- derived by resolve()
    loss: Optional[str] = derived()
    num_classes: Optional[int] = derived()
    image_hw: Optional[Tuple[int, int]] = derived()
    contexts: Optional[Tuple[str, ...]] = derived()
    num_workers: Optional[int] = derived()
    global_batch: Optional[int] = derived()
    lr_step_list: Optional[Tuple[int, ...]] = derived()
    targets: Optional[Tuple[str, ...]] = derived()
    progress_beacon: bool = derived(False)  # a dist launcher watches this worker (INSIGHTGLUON_PROGRESS=1)
    resolved: bool = derived(False)

    # ------------------------------------------------------------------
    @classmethod
    def knobs(cls) -> Tuple[dataclasses.Field, ...]:
        """The user-settable fields, in declaration order."""
        return tuple(f for f in dataclasses.fields(cls) if not f.metadata.get("derived"))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """Build a config from ``{field: value}``, coercing types; unknown keys are errors."""
        fields = {f.name: f for f in cls.knobs()}
        kwargs = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"{source}: unknown key '{key}'")
            kwargs[name] = coerce(fields[name], value, source)
        return cls(**kwargs)

    def resolve(self, property_path: Optional[str] = None, env: Optional[Mapping[str, str]] = None
                ) -> "TrainConfig":
        """Derive data- and machine-dependent values once; returns a new frozen config.

        Parameters
        ----------
        property_path : str, optional
            ``property`` file or dataset directory (default ``data_dir``).
        env : mapping, optional
            Environment (``CUDA_VISIBLE_DEVICES``, ``DMLC_*``); default ``os.environ``.
        """
        if self.resolved:
            return self
        from insightgluon.data.property import read_property
        from insightgluon.losses import loss_name
        from insightgluon.networks.base import default_head
        from insightgluon.precision import check_dtype
        from insightgluon.train.distributed import num_dist_workers, parse_contexts

        env = os.environ if env is None else env
        self._validate()
        try:
            loss = loss_name(self.loss_type)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"--loss-type {self.loss_type}: {str(err).strip(chr(39))}") from None
        prop = read_property(property_path or self.data_dir)
        image_hw = parse_image_size(self.image_size) if self.image_size else (prop.height, prop.width)
        contexts = parse_contexts(self.gpus, self.ctx, env)
        check_dtype(self.dtype, contexts)
        workers = num_dist_workers(self.kvstore, env)
        global_batch = self.per_batch_size * len(contexts) * workers
        updates: Dict[str, Any] = {}
        if loss == "sphereface" and prop.num_classes > SPHEREFACE_LARGE_CLASSES:
            updates.update(SPHEREFACE_LARGE_OVERRIDE)
        ipi = self.images_per_identity
        if loss == "triplet" and ipi == 0:
            ipi = TRIPLET_IMAGES_PER_IDENTITY
        if ipi and self.per_batch_size % ipi:
            raise ConfigError(f"--per-batch-size {self.per_batch_size} is not a multiple of "
                              f"--images-per-identity {ipi}")
        return dataclasses.replace(
            self, **updates, images_per_identity=ipi, loss=loss, num_classes=prop.num_classes,
            version_output=self.version_output or default_head(self.network),
            image_hw=image_hw, contexts=contexts, num_workers=workers, global_batch=global_batch,
            lr_step_list=resolve_lr_steps(self.lr_steps, loss, global_batch),
            targets=tuple(t for t in self.target.split(",") if t),
            progress_beacon=env.get("INSIGHTGLUON_PROGRESS") == "1" and self.kvstore.startswith("dist"),
            resolved=True)

    def _validate(self) -> None:
        positive = ("per_batch_size", "verbose", "frequent", "emb_size", "end_epoch", "val_batch_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("max_steps", "warmup_steps", "state_every", "data_workers", "images_filter",
                     "beta_freeze", "cutoff"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.lr_schedule == "poly" and self.max_steps <= 0:
            raise ConfigError("--lr-schedule poly needs --max-steps > 0")
        if not self.data_dir:
            raise ConfigError("--data-dir is required (a directory with train.rec, train.idx, property)")

    # ------------------------------------------------------------------
    def as_dict(self) -> Dict[str, Any]:
        """Plain ``{field: value}`` (tuples as lists), for yaml and logging."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def log(self, log: logging.Logger = logger) -> None:
        """Log every field, one per line, as the legacy script printed its args."""
        for key, value in self.as_dict().items():
            log.info("config %s: %r", key, value)

    def save_yaml(self, path: str) -> None:
        """Write the configuration as yaml, atomically."""
        import yaml

        from insightgluon.train.checkpoint import atomic_write_bytes

        text = yaml.safe_dump(self.as_dict(), sort_keys=False, default_flow_style=None)
        atomic_write_bytes(path, text.encode("utf-8"))


def coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    """Convert a yaml/CLI value to the field's type, or raise a one-line ConfigError."""
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                     "bool": bool}.get(str(f.type), str)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("0", "1", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes")
            return bool(int(value))
        if kind is str:
            if isinstance(value, (list, tuple)):
                return ",".join(str(v) for v in value)
            return "" if value is None else str(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if isinstance(value, bool) or value is None:
            raise ValueError(value)
        result = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: key '{f.name}': expected {kind.__name__}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and result not in choices:
        raise ConfigError(f"{source}: key '{f.name}': {result!r} is not one of {list(choices)}")
    return result


def parse_image_size(text: str) -> Tuple[int, int]:
    """``'112,112'`` -> ``(112, 112)``, ``'96'`` -> ``(96, 96)``.

    The legacy script required square inputs; ``112,96`` is accepted too, the input
    SphereNet was made for (112x112 data is cropped to its centre 96 columns).
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--image-size '{text}': expected 'H,W' integers") from None
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) <= 0:
        raise ConfigError(f"--image-size '{text}': expected 'H,W' such as 112,112 (or 112,96)")
    return hw


def resolve_lr_steps(text: str, loss: str, global_batch: int) -> Tuple[int, ...]:
    """The lr-step batches: given ones, or the legacy defaults scaled by 512/global batch."""
    if text.strip():
        try:
            steps = tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise ConfigError(f"--lr-steps '{text}': expected comma-separated integers") from None
        if any(s <= 0 for s in steps) or list(steps) != sorted(steps):
            raise ConfigError(f"--lr-steps '{text}': expected increasing positive integers")
        return steps
    base = SOFTMAX_LR_STEPS if loss in SHORT_SCHEDULE_LOSSES else MARGIN_LR_STEPS
    return tuple(int(s * LR_STEP_REFERENCE_BATCH / global_batch) for s in base)
