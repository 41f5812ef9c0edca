"""OpenVINO IR: writing an exported embedding model as ``.xml`` + ``.bin``, reading and compiling one.

The IR is written from the ONNX export (:func:`insightgluon.export.onnx.export_embedding`), so
it holds the same graph: one input ``data`` ``(N, 3, H, W)`` of raw RGB pixels 0-255 with a
dynamic batch, one output, the embedding. The ONNX metadata (``insightgluon.*``: source,
network, threshold, ...) travels in the IR's ``rt_info``; the export adds the SHA-256 of the
``.bin`` there, so a weight file that does not belong to its ``.xml`` (truncated, corrupted,
swapped) is refused when it is read. Weights are stored in float32 by default; with
``compress_to_fp16`` they are stored in float16 (half the file) and computed in the inference
precision as before.
"""
import hashlib
import logging
import os
import tempfile
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError, ConfigError, first_line
from insightgluon.export.onnx import META_PREFIX, ParityError, ParityReport
from insightgluon.openvino_cpu import compile_model, core, require_openvino

logger = logging.getLogger(__name__)

#: Default largest relative difference of the IR to MXNet, by weight storage.
TOLERANCE = {False: 1e-4, True: 1e-2}

CHECKSUM_KEY = "weights_sha256"


def bin_path(xml_path: str) -> str:
    return os.path.splitext(xml_path)[0] + ".bin"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model(path: str):
    """Read an ``.onnx`` or an IR ``.xml`` as an OpenVINO model; an IR's ``.bin`` must match its checksum."""
    require_openvino()
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such model file")
    is_ir = path.lower().endswith(".xml")
    if is_ir and not os.path.isfile(bin_path(path)):
        raise CheckpointError(f"{bin_path(path)}: the weights of {path} are missing")
    try:
        model = core().read_model(path)
    except Exception as err:  # OpenVINO raises RuntimeError and its own types
        raise CheckpointError(f"{path}: OpenVINO cannot read the model ({first_line(err)})")
    if is_ir:
        want = metadata(model).get(CHECKSUM_KEY)
        if want and want != _sha256(bin_path(path)):
            raise CheckpointError(f"{bin_path(path)}: does not hold the weights {path} was written with "
                                  "(SHA-256 differs); export it again")
    return model


def metadata(model) -> Dict[str, str]:
    """The ``insightgluon.*`` metadata an IR or ONNX model carries (without the prefix)."""
    try:
        framework = model.get_rt_info(["framework"]).astype(dict)
    except Exception:  # no such section
        return {}
    return {key[len(META_PREFIX):]: value.astype(str) for key, value in framework.items()
            if key.startswith(META_PREFIX)}


def save_ir(onnx_path: str, output: str, reference: Callable[[np.ndarray], np.ndarray],
            image_hw: Tuple[int, int], compress_to_fp16: bool = False, tolerance: Optional[float] = None,
            metadata_values: Optional[Dict[str, str]] = None, batch: int = 2, seed: int = 0) -> ParityReport:
    """Write the ONNX model ``onnx_path`` as the IR ``output`` (``.xml``, its ``.bin`` beside it).

    Both files are written under temporary names, read back from disk, compiled in float32 and
    run on random raw pixels; only when their output matches ``reference`` (the MXNet model,
    pixels -> embeddings) within ``tolerance`` (default :data:`TOLERANCE` for the weight
    storage) are they renamed into place. Raises :class:`ParityError` otherwise.
    """
    ov = require_openvino()
    if not output.lower().endswith(".xml"):
        raise ConfigError(f"{output}: an OpenVINO IR is written as a .xml file (its .bin beside it)")
    tolerance = TOLERANCE[bool(compress_to_fp16)] if tolerance is None else tolerance
    model = read_model(onnx_path)
    values = dict(metadata_values or {}, ir_weights="float16" if compress_to_fp16 else "float32")
    for key, value in values.items():
        model.set_rt_info(str(value), ["framework", META_PREFIX + key])
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".ir-") as tmp:
        xml = os.path.join(tmp, "model.xml")
        ov.save_model(model, xml, compress_to_fp16=bool(compress_to_fp16))
        model.set_rt_info(_sha256(bin_path(xml)), ["framework", META_PREFIX + CHECKSUM_KEY])
        ov.save_model(model, xml, compress_to_fp16=bool(compress_to_fp16))
        report = check_ir(xml, reference, image_hw, tolerance, label=output, batch=batch, seed=seed)
        os.replace(bin_path(xml), bin_path(output))
        os.replace(xml, output)
    logger.info("wrote %s and %s (weights %s)", output, bin_path(output), values["ir_weights"])
    return report


def check_ir(xml: str, reference: Callable[[np.ndarray], np.ndarray], image_hw: Tuple[int, int],
             tolerance: float, label: Optional[str] = None, batch: int = 2, seed: int = 0) -> ParityReport:
    """OpenVINO (float32) on the IR as stored on disk against ``reference`` on random raw pixels."""
    label = label or xml
    pixels = np.random.default_rng(seed).uniform(0, 255, (batch, 3) + tuple(image_hw)).astype(np.float32)
    expected = np.asarray(reference(pixels), dtype=np.float32)
    try:
        compiled = compile_model(read_model(xml), "float32", label=label)
        got = compiled.create_infer_request().infer({0: pixels})[compiled.output(0)]
    except CheckpointError as err:
        raise ParityError(str(err) if label == xml else f"{label}: the IR as written fails: {err}")
    except Exception as err:  # OpenVINO raises RuntimeError and its own types
        raise ParityError(f"{label}: OpenVINO fails to run the IR ({first_line(err)})")
    if got.shape != expected.shape:
        raise ParityError(f"{label}: OpenVINO output shape {got.shape} != MXNet {expected.shape}")
    max_abs = float(np.max(np.abs(got - expected))) if np.all(np.isfinite(got)) else float("inf")
    report = ParityReport(label, batch, int(expected.shape[1]), max_abs,
                          max_abs / max(float(np.max(np.abs(expected))), 1e-12), tolerance,
                          runtime="OpenVINO f32")
    logger.info("%s", report)
    if not report.passed:
        raise ParityError(str(report))
    return report
