"""Export an MXNet face-recognition checkpoint to ONNX that third-party runtimes accept.

The exported model has one input ``data`` of shape ``(N, 3, H, H)`` (dynamic
batch ``N``) holding raw RGB pixels 0-255 as float32 - the network's own
``(x - 127.5) * 0.0078125`` stays inside the graph - and exactly one output,
the (not L2-normalised) embedding. It loads unmodified in onnxruntime and in
``insightface.model_zoo.get_model`` (routed to ``ArcFaceONNX``, which then
feeds raw pixels). MXNet 1.9.1's exporter defects are corrected by
:mod:`insightgluon.export.fixes`, and every export ends with a parity check of
onnxruntime against MXNet on random raw-pixel input.
"""
import dataclasses
import logging
import os
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError, ConfigError, first_line
from insightgluon.export import fixes
from insightgluon.model_io import checkpoint_paths

logger = logging.getLogger(__name__)

META_PREFIX = "insightgluon."
DEFAULT_TOLERANCE = 1e-4


class ParityError(CheckpointError):
    """An exported model and MXNet disagree beyond the tolerance (or the export cannot run)."""


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """An exported model in ``runtime`` vs MXNet on the same random raw-pixel batch.

    ``max_rel`` is ``max_abs`` divided by the largest absolute MXNet output.
    """

    output: str
    batch: int
    emb_size: int
    max_abs: float
    max_rel: float
    tolerance: float
    runtime: str = "onnxruntime"

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"{self.output}: parity {self.runtime} vs MXNet on {self.batch}x{self.emb_size}: "
                f"max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g} "
                f"(tolerance {self.tolerance:g}) {verdict}")


def load_checkpoint(prefix: str, epoch: int):
    """Read ``prefix-symbol.json`` and ``prefix-%04d.params``.

    Returns ``(symbol, params)`` with ``params`` keyed without ``arg:``/``aux:``.
    """
    import mxnet as mx

    sym_file, params_file = checkpoint_paths(prefix, epoch)
    for path in (sym_file, params_file):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        symbol = mx.sym.load(sym_file)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"{sym_file}: not a readable MXNet symbol file ({first_line(err)})")
    try:
        saved = mx.nd.load(params_file)
    except mx.base.MXNetError as err:
        raise CheckpointError(f"{params_file}: not a readable MXNet params file "
                              f"({first_line(err)})")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{params_file}: holds a list of arrays, not named parameters")
    return symbol, {key.split(":", 1)[-1]: value for key, value in saved.items()}


def graph_input(symbol, params: Dict, source: str) -> str:
    """The one argument of ``symbol`` that is not a parameter (the image input)."""
    free = [name for name in symbol.list_arguments() if name not in params]
    if len(free) != 1:
        raise CheckpointError(f"{source}: expected one image input besides the parameters, "
                              f"found {free or 'none'}")
    return free[0]


def _mxnet_forward(symbol, params: Dict, input_name: str, batch: np.ndarray) -> np.ndarray:
    import mxnet as mx

    block = mx.gluon.SymbolBlock(symbol, mx.sym.var(input_name, dtype="float32"))
    needed = block.collect_params()
    needed.load_dict({k: params[k] for k in needed.keys()}, ctx=mx.cpu())
    return block(mx.nd.array(batch)).asnumpy()


def onnx_session(path: str, label: Optional[str] = None, threads: int = 0):
    """An onnxruntime CPU session for ``path`` (warnings silenced; ``threads`` 0: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception hierarchy
        raise CheckpointError(f"{label or path}: onnxruntime cannot load the model "
                              f"({first_line(err)})")


def parity_check(onnx_path: str, symbol, params: Dict, input_name: str, image_size: Tuple[int, int],
                 batch: int = 2, tolerance: float = DEFAULT_TOLERANCE, seed: int = 0,
                 label: Optional[str] = None) -> ParityReport:
    """Compare onnxruntime with MXNet on random raw-pixel input; raise if above ``tolerance``.

    ``symbol``/``params`` are the MXNet graph and weights *before* any export
    fix, so the check proves the fixes preserve what MXNet computes. ``label``
    names the model in messages (default ``onnx_path``).
    """
    label = label or onnx_path
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, size=(batch, 3) + tuple(image_size)).astype(np.float32)
    expected = _mxnet_forward(symbol, params, input_name, pixels)
    session = onnx_session(onnx_path, label)
    try:
        got = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    except Exception as err:  # onnxruntime raises its own exception hierarchy
        raise ParityError(f"{label}: onnxruntime fails to run the model ({first_line(err)})")
    if got.shape != expected.shape:
        raise ParityError(f"{label}: onnxruntime output shape {got.shape} != "
                          f"MXNet {expected.shape}")
    max_abs = float(np.max(np.abs(got - expected)))
    report = ParityReport(label, batch, int(expected.shape[1]), max_abs,
                          max_abs / max(float(np.max(np.abs(expected))), 1e-12), tolerance)
    logger.info("%s", report)
    if not report.passed:
        raise ParityError(str(report))
    return report


def export_onnx(prefix: str, epoch: int, output: str, layer: str = "fc1",
                image_size: Tuple[int, int] = (112, 112), metadata: Optional[Dict[str, str]] = None,
                tolerance: float = DEFAULT_TOLERANCE, fast_prelu: bool = False) -> ParityReport:
    """Export checkpoint ``prefix,epoch`` cut at ``layer`` to ``output`` (ONNX).

    Parameters
    ----------
    prefix, epoch : str, int
        Any MXNet checkpoint (ours, 2018 InsightFace, third-party): the graph
        from ``prefix-symbol.json``, weights from ``prefix-%04d.params``.
    output : str
        ``.onnx`` file, written atomically.
    layer : str
        Embedding node (``fc1`` by default). An L2Normalization is exported as
        the tensor before it.
    image_size : (int, int)
        Input (H, W); insightface routes only square ``H >= 112`` with ``H % 16 == 0``
        (a 112x96 SphereNet exports, with a warning).
    metadata : dict, optional
        Extra ``metadata_props`` (e.g. ``threshold_cos``), stored under ``insightgluon.``.
    tolerance : float
        Largest relative difference the parity check accepts.
    fast_prelu : bool
        Export ``LeakyReLU(act_type='prelu')`` layers in the fast PReLU form
        (:func:`insightgluon.export.graph.fast_prelu_symbol`) instead of as ``PRelu``,
        which onnxruntime runs slower (``bench/onnx_prelu.py``). The parity check still
        compares with the graph as saved.

    Returns
    -------
    ParityReport
        Raises :class:`ParityError` if onnxruntime and MXNet disagree.
    """
    import onnx

    height, width = (int(v) for v in image_size)
    if min(height, width) < 16:
        raise ConfigError(f"image size {height}x{width}: too small to export")
    if height != width or height < 112 or height % 16:
        logger.warning("input %dx%d: insightface routes only square inputs >= 112 divisible by 16",
                       height, width)
    sym_file = checkpoint_paths(prefix, epoch)[0]
    full, params = load_checkpoint(prefix, epoch)
    cut, out_name = fixes.cut_symbol(full, layer, sym_file)
    input_name = graph_input(cut, params, sym_file)
    shape = (1, 3, height, width)
    out_shape = cut.infer_shape(**{input_name: shape})[1][0]
    if len(out_shape) != 2:
        raise CheckpointError(f"{sym_file}: layer '{out_name}' has shape {out_shape} for one "
                              "image; expected (1, D), an embedding")
    emb_size = int(out_shape[1])
    fixed, fixed_params, _ = fixes.apply_symbol_fixes(_fast_prelu(cut, input_name, shape, sym_file)
                                                      if fast_prelu else cut, params)
    ranks = fixes.prelu_ranks(fixed, input_name, shape)
    used = set(fixed.list_arguments()) | set(fixed.list_auxiliary_states())
    export_params = {k: v for k, v in fixed_params.items() if k in used}

    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=out_dir)
    os.close(fd)
    try:
        model = _translate(fixed, export_params, shape, tmp, sym_file, out_name)
        fixes.apply_onnx_fixes(model, ranks)
        if len(model.graph.output) != 1:
            raise CheckpointError(f"{sym_file}: the exported graph has {len(model.graph.output)} "
                                  "outputs; expected one embedding")
        meta = {"source": f"{os.path.abspath(prefix)},{epoch}", "layer": out_name,
                "emb_size": str(emb_size), "image_size": f"{height}x{width}",
                "input": "raw RGB 0-255 float32 NCHW, normalised inside the graph",
                "output": "embedding, not L2-normalised; compare by cosine similarity"}
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        _set_props(model, meta)
        _check(model, sym_file)
        onnx.save(model, tmp)
        report = parity_check(tmp, cut, params, input_name, (height, width), tolerance=tolerance,
                              label=output)
        _set_props(model, {"parity_max_rel": f"{report.max_rel:.3g}"})
        onnx.save(model, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("wrote %s (embedding %s of %d, input %dx%d)", output, out_name, emb_size,
                height, width)
    return report


def export_embedding(model, prefix: str, epoch: int, output: str, layer: str = "fc1",
                     image_hw: Optional[Tuple[int, int]] = None, metadata: Optional[Dict[str, str]] = None,
                     tolerance: Optional[float] = None, fast_prelu: bool = False) -> ParityReport:
    """Export a loaded MXNet embedding model of checkpoint ``prefix,epoch`` to ONNX.

    Parameters
    ----------
    model : insightgluon.engines.EmbeddingModel
        Engine ``"zoo"``: its network is exported through its own hybridized graph (fast
        PReLU, one depthwise convolution where the 2018 Xception sliced channels; ``source``
        and ``network`` go into the metadata). Otherwise the checkpoint's saved graph cut at
        ``layer``.
    output : str
        ``.onnx`` file (written atomically, parity-checked).
    image_hw : (int, int), optional
        Input size (default ``model.image_hw``).
    metadata, tolerance
        As :func:`export_onnx` (a ``source`` in ``metadata`` names what the checkpoint was made from).
    fast_prelu : bool
        Export a saved graph's native PReLU layers in the fast form (as a zoo network's are):
        onnxruntime runs it faster than its ``PRelu`` (``bench/onnx_prelu.py``).
    """
    image_hw = tuple(image_hw or model.image_hw)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if model.engine != "zoo":
        return export_onnx(prefix, epoch, output, layer, image_hw, metadata=metadata,
                           tolerance=tolerance, fast_prelu=fast_prelu)
    import mxnet as mx

    with tempfile.TemporaryDirectory() as tmp:
        zoo_prefix = os.path.join(tmp, "zoo")
        model.block.hybridize()
        model.block(mx.nd.zeros((1, 3) + image_hw))
        model.block.export(zoo_prefix, epoch=0)
        values = {"source": f"{os.path.abspath(prefix)},{epoch}", **(metadata or {}), "network": model.describe()}
        return export_onnx(zoo_prefix, 0, output, "fc1", image_hw, metadata=values, tolerance=tolerance)


def _fast_prelu(symbol, input_name: str, shape, sym_file: str):
    """``symbol`` with its PReLU layers in the fast form, or as it is where that cannot be done."""
    from insightgluon.export.graph import count_prelu, fast_prelu_symbol

    try:
        fast = fast_prelu_symbol(symbol, shape, input_name)
    except ValueError as err:
        logger.info("%s: PReLU layers exported as they are (%s)", sym_file, err)
        return symbol
    logger.info("%s: %d PReLU layers exported in the fast form", sym_file,
                count_prelu(symbol) - count_prelu(fast))
    return fast


def _translate(symbol, params: Dict, shape, path: str, sym_file: str, out_name: str):
    """Run MXNet's exporter (dynamic batch) into ``path`` and load the result."""
    import mxnet.onnx as mx_onnx
    import onnx

    try:
        with fixes.exporter_checks_opset13():
            mx_onnx.export_model(symbol, params, in_shapes=[shape], in_types=[np.float32],
                                 onnx_file_path=path, dynamic=True,
                                 dynamic_input_shapes=[(None,) + tuple(shape[1:])])
    except (AttributeError, NotImplementedError, KeyError, ValueError,
            onnx.checker.ValidationError) as err:
        raise CheckpointError(f"{sym_file}: MXNet's ONNX exporter failed on layer "
                              f"'{out_name}' ({first_line(err)})")
    return onnx.load(path)


def _check(model, sym_file: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise CheckpointError(f"{sym_file}: the exported graph fails the ONNX checker "
                              f"({first_line(err)})")


def _set_props(model, values: Dict[str, str]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update({META_PREFIX + k: str(v) for k, v in values.items()})
    del model.metadata_props[:]
    for key in sorted(props):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, props[key]


def read_metadata(path: str) -> Dict[str, str]:
    """The ``insightgluon.*`` metadata of an exported model, without the prefix."""
    import onnx

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX model ({first_line(err)})")
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(META_PREFIX)}


def update_metadata(path: str, values: Dict[str, str]) -> None:
    """Add or replace ``insightgluon.*`` metadata of an ONNX file, atomically."""
    import onnx

    read_metadata(path)
    model = onnx.load(path)
    _set_props(model, values)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
