"""The network registry and the options every family shares."""
import inspect
import logging
import numbers
from typing import Any, Dict, Iterable, List, Optional, Tuple

from insightgluon.errors import ConfigError
from insightgluon.nn import ACTIVATIONS, HEADS
from insightgluon.registry import Registry

NETWORKS = Registry("network")
logger = logging.getLogger(__name__)

# The embedding head a network gets when --version-output is not given (E for all others).
DEFAULT_HEADS = {"y1": "GDC"}
# The face size a network was made for, where it is not 112x112 (filled in by its family module).
IMAGE_SIZES: Dict[str, Tuple[int, int]] = {}
# Networks that take their face size only (a Vision Transformer's position embedding fixes it).
FIXED_INPUT: set = set()


def default_head(name: str) -> str:
    """The ``version_output`` network ``name`` uses by default: ``GDC`` for MobileFaceNet, else ``E``."""
    return DEFAULT_HEADS.get(name, "E")


def default_image_size(name: str) -> Tuple[int, int]:
    """``(height, width)`` of the faces network ``name`` was made for (SphereNet: 112x96)."""
    return IMAGE_SIZES.get(name, (112, 112))


# MXNet's optimiser decays only parameters named like these unless the graph declares
# ``__wd_mult__`` (the rule the 2018 Module training applied to every network).
DECAYED_SUFFIXES = ("_weight", "_gamma")


def default_multipliers(name: str) -> Tuple[float, float]:
    """``(lr_mult, wd_mult)`` MXNet gives a parameter whose graph declares neither."""
    return 1.0, (1.0 if name.endswith(DECAYED_SUFFIXES) else 0.0)


def apply_legacy_multipliers(block, declared: Optional[Dict[str, Tuple[float, float]]] = None) -> None:
    """Set every parameter's ``lr_mult``/``wd_mult`` to what the 2018 optimiser used for it.

    ``declared`` holds the ``(__lr_mult__, __wd_mult__)`` a 2018 graph declares on some
    variables; the others get :func:`default_multipliers`. Exported graphs then declare the
    same values, so ``mx.mod.Module`` trains them as we do.
    """
    declared = declared or {}
    for name, param in block.collect_params().items():
        param.lr_mult, param.wd_mult = declared.get(name, default_multipliers(name))


def check_choice(value: Any, valid: Iterable, option: str) -> Any:
    """Return ``value`` if it is one of ``valid``, else raise a one-line :class:`ConfigError`."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"{option}={value!r} is not supported; choose one of: "
                          f"{', '.join(str(v) for v in valid)}")
    return value


def check_head_stem(head: str, version_input: int) -> None:
    """Refuse ``GDC`` on a stride-2 stem (``version_input=0``) with one line.

    Its 7x7 kernel needs a 7x7 map; those stems leave 3x3 to 5x5 on 112x112 faces in every
    family built on the 2018 ``get_fc1``, where the 2018 graph failed to bind.
    """
    if head == "GDC" and version_input == 0:
        raise ConfigError("version_output='GDC' needs a 7x7 feature map; version_input=0 leaves "
                          "a smaller one on 112x112 faces")


def fc1_family_options(emb_size: Any, version_input: Any, version_output: Optional[str],
                       stems: str) -> str:
    """Validate the options of a family built on the 2018 ``get_fc1``; return its head.

    ``version_input`` must be an integer >= 0 as the 2018 builders asserted (``stems`` says
    what the values mean, for the error message); ``version_output`` any head of
    :data:`~insightgluon.nn.HEADS` (the Nov-2018 ``get_fc1`` had them all), ``E`` when empty,
    and not ``GDC`` with ``version_input=0`` (:func:`check_head_stem`).
    """
    if int(emb_size) <= 0:
        raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
    if isinstance(version_input, bool) or not isinstance(version_input, numbers.Integral) or version_input < 0:
        raise ConfigError(f"version_input={version_input!r} is not supported; choose {stems}")
    head = check_choice("E" if version_output in (None, "") else str(version_output), HEADS.names(),
                        "version_output")
    check_head_stem(head, version_input)
    return head


def scaled(channels: int, multiplier: float, divisor: int = 8) -> int:
    """``channels * multiplier`` rounded to a multiple of ``divisor`` (at least ``divisor``).

    ``multiplier == 1`` returns ``channels`` unchanged, so legacy shapes are kept exactly.
    """
    if multiplier == 1.0:
        return channels
    return max(divisor, int(channels * multiplier + divisor / 2) // divisor * divisor)


def common_options(emb_size: int, version_output: Optional[str], version_act: str,
                   version_multiplier: float, default_output: str) -> Dict[str, Any]:
    """Validate the options shared by all families; return them with the head resolved."""
    if int(emb_size) <= 0:
        raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
    if not float(version_multiplier) > 0:
        raise ConfigError(f"version_multiplier={version_multiplier!r} must be > 0")
    head = default_output if version_output in (None, "") else str(version_output)
    check_choice(head, HEADS.names(), "version_output")
    check_choice(version_act, ACTIVATIONS.names(), "version_act")
    return dict(emb_size=int(emb_size), version_output=head, version_act=version_act,
                version_multiplier=float(version_multiplier))


def get_network(name: str, emb_size: int = 512, version_se: int = 0, version_input: int = 1,
                version_output: Optional[str] = None, version_unit: int = 3,
                version_act: str = "prelu", version_multiplier: float = 1.0,
                bn_mom: float = 0.9, dropout: float = 0.0):
    """Build the backbone registered as ``name`` (legacy ``--network`` value).

    Parameters
    ----------
    name : str
        ``r18`` ... ``r269``, ``y1``, ``m1``, ``p68`` ... ``p131``, ``d121`` ... ``d201``, ``i4``, ...;
        arcface_torch's ``iresnet18`` ... ``iresnet200``, ``mbf``, ``mbf_large``, ``vit_t`` ... ``vit_l``
        (see :func:`network_names`).
    emb_size : int
        Width of the ``fc1`` embedding.
    version_se, version_input, version_unit : int
        Legacy ResNet options (SE blocks; stem 0: 7x7/s2, 1: 3x3/s1, 2: BN + 3x3/s1;
        unit 1: post-activation, 2: pre-activation, 3: IR). Families without the
        option ignore it.
    version_output : str, optional
        Embedding head (``E``, ``GDC``, ``GNAP``, ...); ``None`` takes the family's
        default (``GDC`` for ``y1``, ``E`` elsewhere).
    version_act : str
        ``prelu`` (fast PReLU), ``prelu_native``, ``relu``, ``sigmoid``, ``tanh``, ...
    version_multiplier : float
        Width multiplier; 1.0 keeps the legacy shapes.
    bn_mom : float
        BatchNorm momentum.
    dropout : float
        Dropout before the embedding layer of arcface_torch's ``iresnet*`` (its ``dropout``);
        the 2018 families ignore it (their heads fix their own).

    Returns
    -------
    mxnet.gluon.HybridBlock
        Uninitialised. Input (N, 3, 112, 112) float32 raw RGB 0..255 (SphereNet: 112x96);
        output (N, emb_size), the legacy ``fc1`` (not L2-normalised). Every parameter
        carries the ``lr_mult``/``wd_mult`` the 2018 optimiser applied to it: the values
        the 2018 graph declares (a family's ``legacy_multipliers()``), else MXNet's
        rule (:func:`default_multipliers`).
    """
    builder = NETWORKS.get(name)
    options = dict(emb_size=emb_size, version_se=version_se, version_input=version_input,
                   version_output=version_output, version_unit=version_unit, version_act=version_act,
                   version_multiplier=version_multiplier, bn_mom=bn_mom, dropout=dropout)
    net = builder(**options)
    _warn_unread(name, net, options)
    declared = getattr(net, "legacy_multipliers", None)
    apply_legacy_multipliers(net, declared() if declared is not None else None)
    return net


def _warn_unread(name: str, net, options: Dict[str, Any]) -> None:
    """Say which non-default options the family does not read (as its 2018 or arcface_torch builder did not)."""
    read = set(inspect.signature(type(net).__init__).parameters)
    defaults = {k: p.default for k, p in inspect.signature(get_network).parameters.items()}
    given = dict(options, version_output=options["version_output"] or None)
    if given["version_output"] == default_head(name):
        given["version_output"] = None  # what a resolved training config passes for the default
    unread = [f"{k}={v!r}" for k, v in given.items() if k not in read and v != defaults[k]]
    if unread:
        logger.warning("network %s ignores %s: options its builder does not read", name, ", ".join(unread))


def network_names() -> List[str]:
    """Every registered network name, sorted."""
    return NETWORKS.names()
