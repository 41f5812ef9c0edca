"""arcface_torch's Vision Transformers (``vit_t``, ``vit_s``, ``vit_b``, ``vit_l``) for 112x112 faces.

The graph of arcface_torch ``backbones/vit.py`` as its ``get_model`` builds it: 9x9 patches with
stride 9 (144 tokens), a learned position embedding (no class token), ``depth`` pre-norm blocks
(LayerNorm, multi-head self-attention without qkv bias, LayerNorm, an MLP with ReLU6 and 4x
expansion), a final LayerNorm, and the ``feature`` head: all 144 tokens flattened, a dense layer to
``embed_dim``, BatchNorm (eps 2e-5), a dense layer to ``num_features`` and BatchNorm (eps 2e-5).
LayerNorms use PyTorch's epsilon 1e-5. Parameter names are the state dict's with ``.`` as ``_``
(``patch_embed_proj_weight``, ``blocks_0_attn_qkv_weight``, ``pos_embed``, ``mask_token``...).

As in arcface_torch, the dense layers of the blocks compute in the network's dtype (its autocast),
while attention scores, softmax, LayerNorms and the head stay float32. Training applies its
stochastic depth (``drop_path_rate``, 0.1; 0.05 for ``vit_l``) but not its token masking
(``mask_ratio``): both only regularise training and are the identity at inference, so a converted
model gives the same embedding (its ``mask_token``, used by the masking alone, is not carried over).
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import FIXED_INPUT, NETWORKS
from insightgluon.networks.iresnet import EMBEDDING, TORCH_BN_EPS, TORCH_PIXEL_SCALE, torch_bn
from insightgluon.nn import Conv, Dense, Dropout, Flatten, InputNorm, LegacyNamed, Sequence, ToFloat32, pin_float32

#: State-dict entries with no part in the embedding: the token that replaces masked patches in
#: arcface_torch's training.
UNUSED_TORCH_KEYS = ("mask_token",)

IMAGE_SIDE = 112
PATCH = 9
TOKENS = (IMAGE_SIDE // PATCH) ** 2
HEAD_BN_EPS = 2e-5
MLP_RATIO = 4
# name -> (embed_dim, depth, num_heads, drop_path_rate), as arcface_torch's get_model builds them
# (vit_l exists there only as vit_l_dp005_mask_005)
VIT_SPECS = {
    "vit_t": (256, 12, 8, 0.1),
    "vit_s": (512, 12, 8, 0.1),
    "vit_b": (512, 24, 8, 0.1),
    "vit_l": (768, 24, 8, 0.05),
}


def token_dense(name, units, use_bias=True):
    """``nn.Linear`` on every token: (N, L, in) -> (N, L, units), ``<name>_weight`` (units, in)."""
    return Dense(name, units, use_bias=use_bias, flatten=False)


class LayerNorm(LegacyNamed):
    """``nn.LayerNorm`` over the last axis, in float32: ``<name>_gamma``, ``<name>_beta``."""

    def __init__(self, name, eps=TORCH_BN_EPS):
        super().__init__(name)
        self.eps = eps
        self.gamma = self.params.get("gamma", shape=(0,), init="ones", allow_deferred_init=True)
        self.beta = self.params.get("beta", shape=(0,), init="zeros", allow_deferred_init=True)

    def hybrid_forward(self, F, x, gamma, beta):
        x = self._float32(F, x)
        with self._raw_names():
            return F.LayerNorm(x, gamma, beta, axis=-1, eps=self.eps, name=self.op_name)


class Attention(HybridBlock):
    """Multi-head self-attention: ``qkv`` (no bias), scaled dot products and softmax in float32,
    ``proj``. (N, L, D) -> (N, L, D)."""

    def __init__(self, name, dim, heads):
        super().__init__(prefix="")
        self.op_name, self.heads, self.scale = name, heads, (dim // heads) ** -0.5
        with self.name_scope():
            self.qkv = token_dense(f"{name}_qkv", 3 * dim, use_bias=False)
            self.to_float32 = ToFloat32(f"{name}_float32")
            self.proj = token_dense(f"{name}_proj", dim)
            self.out_float32 = ToFloat32(f"{name}_out_float32")

    def hybrid_forward(self, F, x):
        name = self.op_name
        qkv = self.to_float32(self.qkv(x))
        with mx.name.NameManager():
            # (N, L, 3, heads, d) -> (3, N, heads, L, d)
            qkv = F.transpose(F.reshape(qkv, shape=(0, 0, 3, self.heads, -1)), axes=(2, 0, 3, 1, 4),
                              name=f"{name}_split_heads")
            q, k, v = F.split(qkv, num_outputs=3, axis=0, squeeze_axis=True, name=f"{name}_qkv_split")
            scores = F.batch_dot(q, k, transpose_b=True, name=f"{name}_scores") * self.scale
            weights = F.softmax(scores, axis=-1, name=f"{name}_softmax")
            mixed = F.batch_dot(weights, v, name=f"{name}_mix")  # (N, heads, L, d)
            mixed = F.reshape(F.transpose(mixed, axes=(0, 2, 1, 3)), shape=(0, 0, -1), name=f"{name}_merge_heads")
        return self.out_float32(self.proj(mixed))


class Block(HybridBlock):
    """``blocks_I``: x + attn(norm1(x)), then + mlp(norm2(x)); the MLP is fc1, ReLU6, fc2. In
    training each branch is dropped for a whole sample with probability ``drop_path`` (stochastic
    depth, scaled by 1 / (1 - p) as timm's ``DropPath``)."""

    def __init__(self, name, dim, heads, drop_path=0.0):
        super().__init__(prefix="")
        with self.name_scope():
            self.norm1 = LayerNorm(f"{name}_norm1")
            self.attn = Attention(f"{name}_attn", dim, heads)
            self.norm2 = LayerNorm(f"{name}_norm2")
            self.fc1 = token_dense(f"{name}_mlp_fc1", MLP_RATIO * dim)
            self.fc2 = token_dense(f"{name}_mlp_fc2", dim)
            self.out_float32 = ToFloat32(f"{name}_mlp_float32")
            self.drop_attn = Dropout(f"{name}_drop_path_attn", drop_path, axes=(1, 2)) if drop_path else None
            self.drop_mlp = Dropout(f"{name}_drop_path_mlp", drop_path, axes=(1, 2)) if drop_path else None

    def hybrid_forward(self, F, x):
        branch = self.attn(self.norm1(x))
        x = (branch if self.drop_attn is None else self.drop_attn(branch)) + x  # the residual stream: float32
        branch = self.out_float32(self.fc2(F.clip(self.fc1(self.norm2(x)), 0.0, 6.0)))
        return (branch if self.drop_mlp is None else self.drop_mlp(branch)) + x


class VisionTransformer(HybridBlock):
    """arcface_torch ``VisionTransformer``: input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size).

    The patch embedding (``patch_embed_proj``, 9x9 with stride 9) gives (N, 144, dim) tokens, to
    which ``pos_embed`` (1, 144, dim) is added.
    """

    def __init__(self, dim, depth, heads, drop_path_rate=0.0, emb_size=512, bn_mom=0.9, **_legacy_options):
        super().__init__(prefix="")
        from insightgluon.errors import ConfigError

        if int(emb_size) <= 0:
            raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
        with self.name_scope():
            self.norm_input = InputNorm(scale=TORCH_PIXEL_SCALE)
            self.patches = Conv("patch_embed_proj", dim, PATCH, PATCH, 0, use_bias=True)
            # arcface_torch draws it from a normal of std 0.02 (truncated at 2 std)
            self.pos_embed = self.params.get("pos_embed", shape=(1, TOKENS, dim), init=mx.init.Normal(0.02))
            # stochastic depth rising linearly from 0 at the first block to drop_path_rate at the last
            rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
            self.blocks = Sequence([Block(f"blocks_{i}", dim, heads, rates[i]) for i in range(depth)])
            self.head = Sequence([
                LayerNorm("norm"), Flatten("feature_flatten"),
                Dense("feature_0", dim, use_bias=False), torch_bn("feature_1", bn_mom, eps=HEAD_BN_EPS, flat=True),
                Dense("feature_2", int(emb_size), use_bias=False),
                torch_bn("feature_3", bn_mom, eps=HEAD_BN_EPS, flat=True, output=EMBEDDING)])
        # outside arcface_torch's autocast regions: the patch embedding and the head
        pin_float32(self.patches)
        pin_float32(self.head)

    def hybrid_forward(self, F, x, pos_embed):
        tokens = self.patches(self.norm_input(x))  # (N, dim, 12, 12)
        with mx.name.NameManager():
            tokens = F.transpose(F.reshape(tokens, shape=(0, 0, -1)), axes=(0, 2, 1), name="patch_embed_tokens")
            tokens = F.broadcast_add(tokens, pos_embed, name="pos_embed_add")
        return self.head(self.blocks(tokens))


def _register(name):
    @NETWORKS.register(name)
    def build(**options):
        return VisionTransformer(*VIT_SPECS[name], **options)
    FIXED_INPUT.add(name)
    dim, depth, heads, _ = VIT_SPECS[name]
    build.__doc__ = f"arcface_torch {name}: width {dim}, {depth} blocks, {heads} heads, 9x9 patches."
    return build


for _name in VIT_SPECS:
    _register(_name)
