"""Make ``expected.npz``: arcface_torch's own embeddings of seeded weights, computed by PyTorch.

Run once, where PyTorch is installed, with an insightface checkout:

    python tests/data/arcface_torch/make_reference.py INSIGHTFACE/recognition/arcface_torch

For each network it builds the model with arcface_torch's ``get_model``, loads the seeded state
dict of ``tests/_seeded.py`` into it, and stores its eval-mode embedding of the seeded images
(normalised ``(x / 255 - 0.5) / 0.5`` as arcface_torch does). The tests write the same state dict
as a ``.pth`` without PyTorch, convert it and compare with these figures.
"""
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
from _seeded import seeded_images, seeded_state_dict  # noqa: E402

NETWORKS = {"iresnet18": "r18", "mbf": "mbf", "vit_t": "vit_t"}


def _stand_in_timm():
    """vit.py imports three helpers from timm; at eval time DropPath is the identity."""
    if "timm" in sys.modules:
        return
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        pass
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = lambda p: torch.nn.Identity()
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = lambda tensor, std=1.0: torch.nn.init.trunc_normal_(tensor, std=std)
    for name in ("timm", "timm.models"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["timm.models.layers"] = layers


def main(arcface_torch: str) -> None:
    _stand_in_timm()
    sys.path.insert(0, arcface_torch)
    from backbones import get_model

    images = torch.from_numpy(seeded_images())
    expected = {}
    for ours, theirs in NETWORKS.items():
        model = get_model(theirs, num_features=512).eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict({k: torch.from_numpy(v) for k, v in seeded_state_dict(shapes).items()})
        with torch.no_grad():
            expected[ours] = model((images / 255 - 0.5) / 0.5).numpy()
        print(ours, expected[ours].shape, float(np.abs(expected[ours]).max()))
    np.savez_compressed(os.path.join(HERE, "expected.npz"), torch_version=torch.__version__, **expected)


if __name__ == "__main__":
    main(sys.argv[1])
