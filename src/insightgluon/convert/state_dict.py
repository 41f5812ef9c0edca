"""arcface_torch state dicts onto our zoo networks, by one naming rule, and back.

The arcface_torch families (:mod:`insightgluon.networks.iresnet`, ``.mbf``, ``.vit``) name every
parameter by its PyTorch module path with ``.`` as ``_``; the leaf is renamed as MXNet names it:

=================  =====================================================
PyTorch            ours
=================  =====================================================
``weight``         ``_weight`` (Conv2d, Linear) or ``_gamma`` (BatchNorm, LayerNorm, PReLU)
``bias``           ``_bias`` (Conv2d, Linear) or ``_beta`` (BatchNorm, LayerNorm)
``running_mean``   ``_moving_mean``
``running_var``    ``_moving_var``
``pos_embed``      ``pos_embed``
=================  =====================================================

``num_batches_tracked`` and what a family lists in ``UNUSED_TORCH_KEYS`` (ViT's ``mask_token``)
carry nothing into the embedding and are skipped. Layouts agree (convolutions OIHW, dense
layers (out, in), PReLU slopes (C,)), so arrays move unchanged, as float32.
"""
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError
from insightgluon.networks.identify import parameter_shapes

#: PyTorch leaf -> our suffixes, in the order tried.
LEAVES = {
    "weight": ("_weight", "_gamma"),
    "bias": ("_bias", "_beta"),
    "running_mean": ("_moving_mean",),
    "running_var": ("_moving_var",),
}
SKIPPED_LEAVES = ("num_batches_tracked",)
#: The families whose parameters follow the rule, by module.
TORCH_FAMILIES = ("insightgluon.networks.iresnet", "insightgluon.networks.mbf", "insightgluon.networks.vit")


def torch_networks() -> List[str]:
    """Registered names of the networks with arcface_torch's parameter names."""
    from insightgluon.networks.base import NETWORKS

    return [name for name in NETWORKS.in_order() if NETWORKS.get(name).__module__ in TORCH_FAMILIES]


def _unused_keys(network: str) -> Tuple[str, ...]:
    import importlib

    from insightgluon.networks.base import NETWORKS

    module = importlib.import_module(NETWORKS.get(network).__module__)
    return tuple(getattr(module, "UNUSED_TORCH_KEYS", ()))


def our_name(key: str, ours: Iterable[str]) -> Optional[str]:
    """Our parameter name for PyTorch ``key`` among ``ours``, or None."""
    ours = set(ours)
    if key in ours:
        return key
    path, _, leaf = key.rpartition(".")
    base = path.replace(".", "_")
    for suffix in LEAVES.get(leaf, ()):
        if base + suffix in ours:
            return base + suffix
    return None


def torch_key(name: str) -> str:
    """The PyTorch state-dict key of our parameter ``name`` (the rule read backwards)."""
    if "_" not in name or name == "pos_embed":
        return name
    for leaf, suffixes in LEAVES.items():
        for suffix in suffixes:
            if name.endswith(suffix):
                return _torch_path(name[:-len(suffix)]) + "." + leaf
    raise ValueError(f"{name}: no PyTorch leaf for this parameter name")


def _torch_path(base: str) -> str:
    # A module path's parts never contain "_" in arcface_torch except these two-word names.
    protected = ("conv_sep", "patch_embed", "pos_embed")
    for i, word in enumerate(protected):
        base = base.replace(word, f"\0{i}\0")
    path = base.replace("_", ".")
    for i, word in enumerate(protected):
        path = path.replace(f"\0{i}\0", word)
    return path


def map_state_dict(state: Dict[str, np.ndarray], network: str, net, source: str) -> Dict[str, np.ndarray]:
    """``state`` (PyTorch keys) as ``net``'s parameters (our names), checked name by name.

    Raises :class:`CheckpointError` naming the first key or shape that does not fit, or the
    first parameter of ``net`` the file lacks.
    """
    shapes = parameter_shapes(net)
    skipped = _unused_keys(network)
    params: Dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.rpartition(".")[2] in SKIPPED_LEAVES or key in skipped:
            continue
        name = our_name(key, shapes)
        if name is None:
            raise CheckpointError(f"{source}: '{key}' {tuple(value.shape)} has no place in {network} "
                                  f"(a file of another network? without --network, convert finds the one it fits)")
        if tuple(value.shape) != shapes[name]:
            raise CheckpointError(f"{source}: '{key}' is {tuple(value.shape)} in the file but {shapes[name]} in "
                                  f"{network} (a file of another network or another --emb-size?)")
        params[name] = np.asarray(value, dtype=np.float32)
    missing = [name for name in shapes if name not in params]
    if missing:
        raise CheckpointError(f"{source}: has no '{torch_key(missing[0])}' that {network} needs "
                              f"(for its {missing[0]}; {len(missing)} missing)")
    return params


def to_state_dict(net) -> Dict[str, np.ndarray]:
    """``net``'s parameters under arcface_torch's state-dict keys (what ``map_state_dict`` reads)."""
    return {torch_key(name): param.data().asnumpy() for name, param in net.collect_params().items()}


def embedding_width(state: Dict[str, np.ndarray], network: str, default: int = 512) -> int:
    """``num_features`` of a state dict for ``network``: the width of its last BatchNorm (``default``
    when the file lacks it: :func:`map_state_dict` then names what is missing)."""
    from insightgluon.networks.base import get_network

    key = torch_key(list(get_network(network).collect_params().keys())[-1])
    return int(state[key].shape[0]) if key in state else default


def identify_torch_network(state: Dict[str, np.ndarray]) -> Optional[str]:
    """The arcface_torch network whose parameter names and shapes are exactly the file's, or None.

    Names tell the family and depth; shapes tell members of equal depth apart (``vit_t`` and
    ``vit_s`` differ in width only).
    """
    from insightgluon.networks.base import get_network

    keys = {k for k in state if k.rpartition(".")[2] not in SKIPPED_LEAVES}
    for network in torch_networks():
        net = get_network(network)
        ours = set(net.collect_params().keys())
        named = {k: our_name(k, ours) for k in keys - set(_unused_keys(network))}
        if set(named.values()) != ours:
            continue
        shapes = parameter_shapes(get_network(network, emb_size=embedding_width(state, network)))
        if all(tuple(state[k].shape) == shapes[name] for k, name in named.items()):
            return network
    return None
