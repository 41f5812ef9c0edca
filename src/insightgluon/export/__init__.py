"""Deployment: ONNX export with parity check, fc7 stripping and threshold calibration.

``export_onnx`` writes a model that onnxruntime and ``insightface`` accept
unmodified; ``strip_fc7`` turns a training checkpoint into a deployment one;
``graph.fast_prelu_symbol`` rewrites the PReLU layers of any MXNet graph into the
fast form; ``engine.OnnxEmbedding`` runs an export as an evaluation engine.
Importing this package does not import MXNet.
"""
from insightgluon.export.onnx import ParityError, ParityReport, export_onnx, read_metadata

__all__ = ["ParityError", "ParityReport", "export_onnx", "read_metadata", "strip_fc7"]


def __getattr__(name):
    # deploy imports MXNet-dependent helpers lazily; keep the package import light.
    if name == "strip_fc7":
        from insightgluon.export.deploy import strip_fc7

        return strip_fc7
    raise AttributeError(name)
