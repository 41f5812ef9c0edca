"""Shared building blocks of the face networks (legacy-named layers, fast PReLU, heads)."""
from insightgluon.nn.blocks import (ACTIVATIONS, BNActConv, ConvBNAct, Flatten, GlobalAvgPool, InputNorm,
                                    Pool, Sequence, SqueezeExcite, channel_concat, make_activation)
from insightgluon.nn.heads import HEADS, make_head
from insightgluon.nn.layers import (COMPUTE_DTYPES, LEGACY_BN_EPS, MXNET_BN_EPS, Activation, BatchNorm,
                                    Conv, Dense, Dropout, Float32Output, LegacyNamed, ToFloat32, compute_dtype,
                                    float32_symbol, mx_dtype, pin_float32, set_compute_dtype)
from insightgluon.nn.prelu import NativePReLU, PReLU

__all__ = ["COMPUTE_DTYPES", "compute_dtype", "float32_symbol", "Float32Output", "mx_dtype", "set_compute_dtype",
           "ACTIVATIONS", "BNActConv", "Pool", "HEADS", "LEGACY_BN_EPS", "MXNET_BN_EPS", "Activation", "BatchNorm",
           "Conv", "ConvBNAct", "channel_concat", "Dense", "Dropout", "Flatten", "GlobalAvgPool", "InputNorm", "LegacyNamed",
           "NativePReLU", "PReLU", "Sequence", "ToFloat32", "pin_float32", "SqueezeExcite", "make_activation", "make_head"]
