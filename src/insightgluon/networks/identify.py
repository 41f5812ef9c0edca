"""Recognise which zoo network (and options) a checkpoint was saved from, by its arrays alone.

A checkpoint saved by the 2018 code, by the model zoo or by us holds the
parameter names and shapes of the graph that made it; our networks reproduce
those exactly, so the pair (network, options) whose parameters equal the
file's is the network to run it with. The search is cheap (networks are built
without weights, names first, shapes only for the few whose names fit) and
exact (names and every shape must agree); :func:`insightgluon.model_io.load_zoo_block`
then also compares outputs with the checkpoint's own graph before trusting it.
"""
import itertools
import logging
from typing import Dict, Iterator, Optional, Tuple

from insightgluon.errors import ConfigError, InsightGluonError
from insightgluon.networks.base import FIXED_INPUT, NETWORKS, default_image_size, get_network, network_names
from insightgluon.networks.legacy import CLASSIFIER_PREFIXES, match_variant
from insightgluon.nn import HEADS

logger = logging.getLogger(__name__)

# How many networks (by name overlap with the default build) to search options for.
SHORTLIST = 4
# A family is searched when the file holds this share of its smallest member's parameter names.
FAMILY_SHARE = 0.2
INPUT_SIZES = ((112, 112), (112, 96))
# get_network's defaults, left out of the options reported
DEFAULTS = dict(version_output=None, version_unit=3, version_input=1, version_se=0, version_act="prelu",
                version_multiplier=1.0)


def _names(net) -> set:
    return set(net.collect_params().keys())


def parameter_shapes(net, image_hw=(112, 112)) -> Dict[str, Tuple[int, ...]]:
    """Every parameter's shape in ``net`` (uninitialised is fine) at input size ``image_hw``."""
    import mxnet as mx

    sym = net(mx.sym.var("data"))
    args, _, auxs = sym.infer_shape(data=(1, 3) + tuple(image_hw))
    names = sym.list_arguments() + sym.list_auxiliary_states()
    return {n: tuple(s) for n, s in zip(names, args + auxs) if n != "data"}


def _emb_size(shapes: Dict[str, Tuple[int, ...]]) -> Optional[int]:
    for name in ("fc1_gamma", "fc1_weight", "pre_fc1_weight", "fc1_bias",
                 "features_gamma", "features_layers_3_gamma", "feature_3_gamma"):  # (arcface_torch's)
        if name in shapes and shapes[name]:
            return int(shapes[name][0])
    return None


def _head_names(head: str) -> set:
    """Parameter names a head owns (independent of widths)."""
    from insightgluon.nn import make_head

    return _names(make_head(head, 8, 8))


def _option_grid(names: set) -> Iterator[Dict]:
    """Option values worth trying for a file with these parameter names (most likely first)."""
    fitting = [h for h in HEADS.names() if h != "GNAP" and _head_names(h) <= names]
    heads = [None] + sorted(fitting, key=lambda h: -len(_head_names(h))) + ["GNAP"]
    se = 1 if any("_se_conv1_" in n for n in names) else 0
    inputs = [2] if "bn_data_gamma" in names else [1, 0]
    for head, unit, version_input, act in itertools.product(heads, (3, 1, 2), inputs, ("prelu", "relu")):
        yield dict(version_output=head, version_unit=unit, version_input=version_input, version_se=se,
                   version_act=act)


def _shape(value) -> Tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def _as_read_by(net, saved: Dict) -> Optional[Dict]:
    """``saved`` as ``net``'s family reads a checkpoint (its ``convert_legacy_params``), or None
    when the family cannot read it."""
    convert = getattr(net, "convert_legacy_params", None)
    if convert is None or not all(hasattr(v, "shape") for v in saved.values()):
        return saved  # (shapes only: conversions that move arrays cannot run)
    try:
        return convert(saved)
    except InsightGluonError:
        return None


def _families(saved: Dict) -> set:
    """Modules of the families worth searching: the first-registered member of each (its smallest
    depth) has at least :data:`FAMILY_SHARE` of its parameter names in the file, as that family
    reads it. One build per family instead of one per registered name."""
    first: Dict[str, str] = {}
    for name in NETWORKS.in_order():
        first.setdefault(NETWORKS.get(name).__module__, name)
    kept = set()
    for module, name in first.items():
        try:
            net = get_network(name)
        except ConfigError:
            continue
        converted = _as_read_by(net, saved)
        if converted is not None and len(_names(net) & set(converted)) >= FAMILY_SHARE * len(_names(net)):
            kept.add(module)
    return kept


def _candidates(saved: Dict) -> Iterator[Tuple[str, Dict]]:
    """Registered names, most likely first (share of their default parameter names the file holds),
    each with the file as that family reads it."""
    scored = []
    families = _families(saved)
    for name in network_names():
        if NETWORKS.get(name).__module__ not in families:
            continue
        try:
            net = get_network(name)
        except ConfigError:
            continue
        converted = _as_read_by(net, saved)
        if converted is None:
            continue
        ours, theirs = _names(net), set(converted)
        scored.append((len(ours & theirs) / max(len(ours | theirs), 1), name, converted))
    scored.sort(key=lambda item: -item[0])
    return ((name, converted) for score, name, converted in scored[:SHORTLIST] if score > 0.2)


def identify_network(saved: Dict, image_hw: Optional[Tuple[int, int]] = None
                     ) -> Optional[Tuple[str, Dict, Tuple[int, int]]]:
    """``(network, options, (H, W))`` whose parameters are exactly ``saved``'s, or None.

    Parameters
    ----------
    saved : dict
        Parameter name -> array (or shape) of a checkpoint (``fc7*`` is ignored). With
        arrays, a family's own layout conversion applies (Xception's per-channel kernels,
        counter numbers of another process).
    image_hw : (int, int), optional
        The face size the checkpoint was trained at, when known: tried before the usual
        112x112 and 112x96 (an embedding layer's shape depends on it).

    Returns
    -------
    (str, dict, tuple) or None
        A registered network name, the ``get_network`` keyword arguments and an input
        size at which every shape agrees; None when no zoo network has these arrays.
    """
    saved = {k: v for k, v in saved.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    sizes = tuple(dict.fromkeys(((tuple(image_hw),) if image_hw else ()) + INPUT_SIZES))
    for name, converted in _candidates(saved):
        shapes = {k: _shape(v) for k, v in converted.items()}
        emb_size = _emb_size(shapes) or 512  # heads without a dense layer (A, AX, Z) ignore it
        read = _options_read(name)
        tried = set()
        for options in _option_grid(set(shapes)):
            # only the options this family reads: arcface_torch's read none of the grid's
            options = dict({k: v for k, v in options.items() if k in read}, emb_size=emb_size)
            if tuple(sorted(options.items(), key=str)) in tried:
                continue
            tried.add(tuple(sorted(options.items(), key=str)))
            try:
                net = get_network(name, **options)
            except ConfigError:
                continue
            ours = _names(net)
            renamed, _ = match_variant(shapes, ours)
            if set(renamed) != ours:
                continue
            multiplier = _multiplier(name, options, renamed)
            if multiplier != 1.0 and "version_multiplier" in read:
                options = dict(options, version_multiplier=multiplier)
                net = get_network(name, **options)
            for size in (sizes if name not in FIXED_INPUT else (default_image_size(name),)):
                try:
                    ours_shapes = parameter_shapes(net, size)
                except Exception:  # noqa: BLE001 -- MXNet refuses this input size for this network
                    continue
                if all(ours_shapes.get(k) == v for k, v in renamed.items()):
                    return name, {k: v for k, v in options.items() if DEFAULTS.get(k) != v}, size
    return None


def _options_read(name: str) -> set:
    """The ``get_network`` options the family of ``name`` reads (its constructor's parameters)."""
    import inspect

    return set(inspect.signature(type(get_network(name)).__init__).parameters)


def _multiplier(name: str, options: Dict, saved: Dict[str, Tuple[int, ...]]) -> float:
    """The width multiplier that makes the first convolution as wide as the file's (1.0 if it is)."""
    net = get_network(name, **options)
    for pname, param in net.collect_params().items():
        if pname.endswith("_weight") and pname in saved and len(saved[pname]) == 4:
            shapes = parameter_shapes(net, INPUT_SIZES[0])
            ours, theirs = shapes[pname][0], saved[pname][0]
            return 1.0 if ours == theirs else theirs / ours
    return 1.0
