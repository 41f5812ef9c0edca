"""OpenVINO on the CPU: the import that says how to install it, capabilities, compiling a model.

Shared by the IR export (:mod:`insightgluon.export.openvino`), the engine
(:mod:`insightgluon.engines.openvino`) and MTCNN (:mod:`insightgluon.align.mtcnn_openvino`).
"""
from typing import Tuple

from insightgluon.errors import CheckpointError, ConfigError, first_line

#: OpenVINO's name of each compute precision (``INFERENCE_PRECISION_HINT``).
PRECISIONS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
#: Its CPU capability (``OPTIMIZATION_CAPABILITIES``) that a precision needs.
CAPABILITIES = {"float32": "FP32", "bfloat16": "BF16", "float16": "FP16"}


def require_openvino():
    """The ``openvino`` module, or a one-line :class:`ConfigError` saying how to get it."""
    try:
        import openvino
    except ImportError as err:
        raise ConfigError(f"OpenVINO is not importable here ({err}); install it with "
                          "'pip install -c requirements/constraints.txt openvino' or use another --engine")
    return openvino


def core():
    """An OpenVINO ``Core``."""
    return require_openvino().Core()


def capabilities() -> Tuple[str, ...]:
    """The CPU plug-in's ``OPTIMIZATION_CAPABILITIES`` (``FP32``, ``BF16``, ...)."""
    return tuple(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def compile_model(model, dtype: str = "float32", threads: int = 0, label: str = "model"):
    """Compile for the CPU computing in ``dtype`` with subnormals flushed; ``threads`` 0 lets OpenVINO choose."""
    if dtype not in PRECISIONS:
        raise ConfigError(f"OpenVINO compute dtype {dtype!r}: choose one of {', '.join(PRECISIONS)}")
    # Subnormal floats slow x86 kernels several-fold; MXNet runs with flush-to-zero (runtime.py) and
    # OpenVINO's own threads are told the same.
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[dtype], "CPU_DENORMALS_OPTIMIZATION": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        return core().compile_model(model, "CPU", config)
    except Exception as err:  # OpenVINO raises RuntimeError and its own types
        raise CheckpointError(f"{label}: OpenVINO cannot compile the model for the CPU ({first_line(err)})")
