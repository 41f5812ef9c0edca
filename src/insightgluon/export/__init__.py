"""Deployment: ONNX and OpenVINO IR export with parity checks, fc7 stripping, thresholds.

``export_onnx`` writes a model that onnxruntime and ``insightface`` accept
unmodified; ``openvino.save_ir`` writes that model as an OpenVINO IR; ``strip_fc7``
turns a training checkpoint into a deployment one; ``graph.fast_prelu_symbol``
rewrites the PReLU layers of any MXNet graph into the fast form. What runs an
export for evaluation is in :mod:`insightgluon.engines`. Importing this package
does not import MXNet.
"""
from insightgluon.export.onnx import ParityError, ParityReport, export_onnx, read_metadata

__all__ = ["ParityError", "ParityReport", "export_onnx", "read_metadata", "strip_fc7"]


def __getattr__(name):
    # deploy imports MXNet-dependent helpers lazily; keep the package import light.
    if name == "strip_fc7":
        from insightgluon.export.deploy import strip_fc7

        return strip_fc7
    raise AttributeError(name)
