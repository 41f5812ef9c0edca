"""Load 2018 InsightFace ``prefix-NNNN.params`` files into our networks."""
import os
from typing import Dict

from insightgluon.errors import CheckpointError

# Parameters of the training graph that are not part of the backbone.
CLASSIFIER_PREFIXES = ("fc7_",)


def read_legacy_params(params_file: str) -> Dict[str, "mx.nd.NDArray"]:
    """Read a ``.params`` file into ``{name: NDArray}`` with the ``arg:``/``aux:`` tags removed."""
    import mxnet as mx

    if not os.path.isfile(params_file):
        raise CheckpointError(f"{params_file}: no such parameter file")
    try:
        saved = mx.nd.load(params_file)
    except mx.base.MXNetError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{params_file}: not a readable MXNet params file ({first})")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{params_file}: holds an unnamed list of arrays, not named parameters")
    return {key.split(":", 1)[-1]: value for key, value in saved.items()}


def load_legacy_params(net, params_file: str, ctx=None, allow_missing: bool = False):
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
    allow_missing : bool
        Keep the current values of parameters absent from the file (they must be
        initialised already) instead of failing.

    Returns
    -------
    list of str
        Names in the file that the network does not use (the ``fc7_*`` classifier
        is ignored silently and not listed).

    Raises
    ------
    CheckpointError
        Missing parameters (unless ``allow_missing``) or a shape mismatch; the
        message names the file and the first offending parameters.
    """
    import mxnet as mx

    saved = read_legacy_params(params_file)
    convert = getattr(net, "convert_legacy_params", None)
    if convert is not None:  # a family that stores a 2018 layout differently (Xception)
        saved = convert(saved)
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
    present = {name: saved[name] for name in params.keys() if name in saved}
    params.load_dict(present, ctx=ctx or mx.cpu(), allow_missing=allow_missing,
                     filename=params_file)
    unused = [name for name in saved if name not in params.keys()
              and not name.startswith(CLASSIFIER_PREFIXES)]
    return unused


def _few(names, limit=5):
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
