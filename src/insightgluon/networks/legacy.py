"""Load 2018 InsightFace ``prefix-NNNN.params`` files into our networks.

A checkpoint saved by the 2018 code holds exactly the parameter names of the
graph its builder made, which our networks reproduce. A few official model-zoo
releases were saved by older code and name some arrays differently; the table
:data:`MODEL_ZOO_VARIANTS` maps them, and loading says which variant matched.
"""
import json
import logging
import os
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from insightgluon.errors import CheckpointError, first_line

logger = logging.getLogger(__name__)

# Parameters of the training graph that are not part of the backbone.
CLASSIFIER_PREFIXES = ("fc7_",)


class ZooVariant(NamedTuple):
    """A naming variant of official 2018 model-zoo files.

    ``renames`` maps a name in the file to ours; the variant applies when the file
    has every old name and none of the new ones and the network wants the new ones.
    """

    name: str
    description: str
    renames: Dict[str, str]


MODEL_ZOO_VARIANTS = (
    ZooVariant("model-y1-test2",
               "MobileFaceNet of the April-2018 model zoo (saved by MXNet 1.0): the GDC head's dense "
               "layer is the operator pre_fc1 with bias pre_fc1_bias, but its weight variable is fc1_weight "
               "(declared with __wd_mult__ 10)",
               {"fc1_weight": "pre_fc1_weight"}),
)


def read_legacy_params(params_file: str) -> Dict[str, "mx.nd.NDArray"]:
    """Read a ``.params`` file into ``{name: NDArray}`` with the ``arg:``/``aux:`` tags removed."""
    import mxnet as mx

    if not os.path.isfile(params_file):
        raise CheckpointError(f"{params_file}: no such parameter file")
    try:
        saved = mx.nd.load(params_file)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"{params_file}: not a readable MXNet params file ({first_line(err)})")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{params_file}: holds an unnamed list of arrays, not named parameters")
    return {key.split(":", 1)[-1]: value for key, value in saved.items()}


def match_variant(saved: Dict, wanted: Iterable[str]) -> Tuple[Dict, Optional[ZooVariant]]:
    """``saved`` renamed by the first model-zoo variant that applies to it (and the variant)."""
    wanted = set(wanted)
    for variant in MODEL_ZOO_VARIANTS:
        old, new = set(variant.renames), set(variant.renames.values())
        if old <= set(saved) and not new & set(saved) and new <= wanted:
            renamed = {variant.renames.get(name, name): value for name, value in saved.items()}
            return renamed, variant
    return saved, None


def counter_indices(names: Iterable[str], pattern) -> Dict[str, Dict[int, Tuple[str, ...]]]:
    """``{kind: {index: sorted suffixes}}`` of the names ``pattern`` splits into (kind, index, suffix)."""
    out: Dict[str, Dict[int, set]] = {}
    for name in names:
        match = pattern.match(name)
        if match:
            kind, index, suffix = match.groups()
            out.setdefault(kind, {}).setdefault(int(index), set()).add(suffix)
    return {kind: {i: tuple(sorted(s)) for i, s in found.items()} for kind, found in out.items()}


def renumber_counters(saved: Dict, ours: Iterable[str], pattern) -> Dict:
    """``saved`` with counter-numbered names shifted onto ``ours`` where that is all that differs.

    The 2018 graphs built from unnamed operators or Gluon blocks (Inception-ResNet-v2,
    NASNet) numbered their parameters with process-wide counters (``batchnorm245_gamma``),
    so a process that had built other layers first saved the same network under shifted
    numbers. For each kind (``pattern`` splits a name into kind, index and suffix) whose
    indices and suffixes are ours plus one constant, the names are shifted back; anything
    else is returned unchanged, and loading then names what does not match.
    """
    ours_found, theirs = counter_indices(ours, pattern), counter_indices(saved, pattern)
    shifts = {}
    for kind, indices in ours_found.items():
        found = theirs.get(kind)
        if not found or found == indices:
            continue
        shift = min(found) - min(indices)
        if {i - shift: s for i, s in found.items()} == indices:
            shifts[kind] = shift
    if not shifts:
        return saved

    def rename(name):
        match = pattern.match(name)
        if match is None or match.group(1) not in shifts:
            return name
        kind, index, suffix = match.groups()
        return f"{kind}{int(index) - shifts[kind]}_{suffix}"

    return {rename(name): value for name, value in saved.items()}


def legacy_arrays(net, params_file: str) -> Tuple[Dict, Optional[ZooVariant]]:
    """The arrays of ``params_file`` under ``net``'s parameter names, and the variant that matched.

    Applies the network's own layout conversion (``convert_legacy_params``, e.g. Xception's
    per-channel kernels) and the model-zoo naming variants.
    """
    saved = read_legacy_params(params_file)
    convert = getattr(net, "convert_legacy_params", None)
    if convert is not None:
        saved = convert(saved)
    saved, variant = match_variant(saved, net.collect_params().keys())
    if variant is not None:
        logger.info("%s: model-zoo variant %s (%s)", params_file, variant.name,
                    ", ".join(f"{a} -> {b}" for a, b in variant.renames.items()))
    return saved, variant


def declared_multipliers(params_file: str, variant: Optional[ZooVariant] = None) -> Dict[str, Tuple[float, float]]:
    """``{name: (lr_mult, wd_mult)}`` declared by the checkpoint's ``prefix-symbol.json``, if any.

    Names are ours (after the variant's renames). A checkpoint without a symbol file, or
    whose graph declares nothing, gives ``{}``.
    """
    symbol_file = re.sub(r"-\d+\.params$", "-symbol.json", params_file)
    if symbol_file == params_file or not os.path.isfile(symbol_file):
        return {}
    try:
        with open(symbol_file) as handle:
            nodes = json.load(handle)["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{symbol_file}: not a readable MXNet symbol file ({err})") from None
    renames = variant.renames if variant is not None else {}
    out = {}
    for node in nodes:
        attrs = node.get("attrs") or node.get("attr") or {}
        if node.get("op") == "null" and ("__lr_mult__" in attrs or "__wd_mult__" in attrs):
            out[renames.get(node["name"], node["name"])] = (float(attrs.get("__lr_mult__", 1.0)),
                                                            float(attrs.get("__wd_mult__", 1.0)))
    return out


def load_legacy_params(net, params_file: str, ctx=None, allow_missing: bool = False,
                       allow_extra: bool = False) -> List[str]:
    """Load a 2018 ``prefix-NNNN.params`` (or one saved by ``HybridBlock.export``) into ``net``.

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
        A network from :func:`insightgluon.networks.get_network` built with the
        checkpoint's architecture options. A network with a method
        ``convert_legacy_params(saved) -> saved`` gets the file's ``{name: NDArray}``
        through it first (e.g. Xception stacks the 2018 per-channel kernels).
    params_file : str
        ``prefix-NNNN.params`` with ``arg:``/``aux:`` keys (plain keys are accepted too).
    ctx : mx.Context or list of mx.Context, optional
        Where to place the parameters (default CPU).
        Official model-zoo files whose names differ (:data:`MODEL_ZOO_VARIANTS`) load
        too; the matched variant is logged.
    allow_missing : bool
        Keep the current values of parameters absent from the file (they must be
        initialised already) instead of failing.
    allow_extra : bool
        Accept arrays the network does not use (other than the ``fc7_*`` classifier,
        always ignored) instead of failing.

    Returns
    -------
    list of str
        Names in the file that the network does not use, without ``fc7_*`` (empty
        unless ``allow_extra``).

    Raises
    ------
    CheckpointError
        Missing or unexpected parameters, or a shape mismatch; the message names
        the file and the first offending parameters.
    """
    import mxnet as mx

    saved, _ = legacy_arrays(net, params_file)
    params = net.collect_params()
    missing = [name for name in params.keys() if name not in saved]
    if missing and not allow_missing:
        raise CheckpointError(f"{params_file}: missing {len(missing)} network parameters: "
                              f"{_few(missing)} (was it saved from another --network or options?)")
    for name, param in params.items():
        expected = tuple(param.shape or ())
        got = tuple(saved[name].shape) if name in saved else None
        if got is not None and expected and (
                len(expected) != len(got) or any(e not in (0, g) for e, g in zip(expected, got))):
            raise CheckpointError(f"{params_file}: parameter {name} has shape "
                                  f"{got}, the network expects {expected} (0 = any)")
    unused = [name for name in saved if name not in params.keys()
              and not name.startswith(CLASSIFIER_PREFIXES)]
    if unused and not allow_extra:
        raise CheckpointError(f"{params_file}: {len(unused)} parameters the network does not have: "
                              f"{_few(unused)} (was it saved from another --network or options?)")
    present = {name: saved[name] for name in params.keys() if name in saved}
    params.load_dict(present, ctx=ctx or mx.cpu(), allow_missing=allow_missing,
                     filename=params_file)
    return unused


def _few(names, limit=5):
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
