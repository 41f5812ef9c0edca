"""Face-recognition backbones under their legacy ``--network`` names.

``get_network("r100", emb_size=512)`` returns a Gluon ``HybridBlock`` whose
parameter names equal the 2018 InsightFace symbols', so old checkpoints load
with :func:`load_legacy_params`. Families: :mod:`.resnet` (``r18`` ... ``r269``),
:mod:`.mobilefacenet` (``y1``), :mod:`.mobilenet` (``m1``), :mod:`.mobilenetv2` (``m2``), :mod:`.dpn`
(``p68`` ... ``p131``), :mod:`.densenet` (``d121`` ... ``d201``) and
:mod:`.inception_resnet_v2` (``i4``), :mod:`.nasnet` (``n1``), :mod:`.xception` (``x1``) and
:mod:`.spherenet` (``s20`` ... ``s104``).
arcface_torch's backbones, named by state-dict paths rather than 2018 symbols: :mod:`.iresnet`
(``iresnet18`` ... ``iresnet200``), :mod:`.mbf` (``mbf``, ``mbf_large``) and :mod:`.vit` (``vit_t`` ... ``vit_l``).
"""
from insightgluon.networks import (densenet, dpn, inception_resnet_v2, iresnet, mbf,  # noqa: F401
                                   mobilefacenet, mobilenet, mobilenetv2, nasnet,
                                   resnet, spherenet, vit, xception)  # (register families)
from insightgluon.networks.base import NETWORKS, get_network, network_names
from insightgluon.networks.legacy import load_legacy_params, read_legacy_params

__all__ = ["NETWORKS", "get_network", "network_names", "load_legacy_params",
           "read_legacy_params"]
