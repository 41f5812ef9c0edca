"""Backbone + loss head + optimiser on a list of devices: one training step, state in and out."""
import contextlib
import logging
import os
import tempfile
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.train import checkpoint as ckpt
from insightgluon.train.callbacks import NonFiniteLossError

logger = logging.getLogger(__name__)

# The legacy global initializer by network family (first letter of the name), REFERENCE §4.1.
_INIT_BY_FAMILY = {"r": ("gaussian", "out"), "y": ("gaussian", "out"), "i": ("gaussian", "in"),
                   "x": ("gaussian", "in")}
_DEFAULT_INIT = ("uniform", "in")
# arcface_torch's networks (their names begin like 2018 families'): fan-out Gaussian, as its
# kaiming/normal initialisers of the convolutions scale by fan-out; ViT's Gaussian by fan-in.
_INIT_BY_NETWORK = {**{f"iresnet{d}": ("gaussian", "out") for d in (18, 34, 50, 100, 200)},
                    "mbf": ("gaussian", "out"), "mbf_large": ("gaussian", "out"),
                    **{f"vit_{s}": ("gaussian", "in") for s in "tsbl"}}


def legacy_initializer(network: str):
    """``Xavier(rnd, factor, magnitude=2)`` as the 2018 script chose it for ``network`` (and its
    nearest for arcface_torch's networks)."""
    import mxnet as mx

    if network in _INIT_BY_NETWORK:
        rnd, factor = _INIT_BY_NETWORK[network]
    else:
        rnd, factor = _INIT_BY_FAMILY.get(network[:1], _DEFAULT_INIT)
    return mx.init.Xavier(rnd_type=rnd, factor_type=factor, magnitude=2)


def _mix_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0] % (2 ** 31))


class TrainModel:
    """The trainable parts of a run and the step that updates them.

    ``build`` creates the backbone (``get_network``) and head (``create_loss``),
    initialises them (legacy Xavier or ``--pretrained``), hybridizes, and makes a
    ``gluon.Trainer`` (SGD, ``update_on_kvstore=False`` so optimiser states live in
    this process and can be saved, also under ``dist_sync``).
    """

    def __init__(self, cfg):
        from insightgluon.train.distributed import make_contexts

        self.cfg = cfg
        self.ctx = make_contexts(cfg.contexts)
        self.rank = 0
        self.distributed = False
        self.net = self.head = self.trainer = self.params = None
        self.loss_scale = None  # DynamicLossScale of an fp16 run

    # -- construction --------------------------------------------------------------------------
    def build(self, dataset, kvstore, rank: int = 0, start_step: int = 0) -> None:
        import mxnet as mx
        from mxnet import gluon

        from insightgluon.losses import create_loss
        from insightgluon.networks import get_network
        from insightgluon.nn import set_compute_dtype
        from insightgluon.precision import DTYPES, DynamicLossScale

        cfg = self.cfg
        self.rank = rank
        self.distributed = not isinstance(kvstore, str)
        self.net = get_network(cfg.network, emb_size=cfg.emb_size, version_se=cfg.version_se,
                               version_input=cfg.version_input, version_output=cfg.version_output,
                               version_unit=cfg.version_unit, version_act=cfg.version_act,
                               version_multiplier=cfg.version_multiplier, bn_mom=cfg.bn_mom, dropout=cfg.dropout)
        # Low precision is set before the first pass: an fp32 inference pass would let oneDNN
        # reorder depthwise weights in place into a layout it cannot cast to bfloat16.
        set_compute_dtype(self.net, DTYPES[cfg.dtype])
        if cfg.dtype == "fp16":
            if self.distributed:
                raise ConfigError("--dtype fp16 with a dist_* kvstore is not supported: skipping a step on "
                                  "overflow has not been proven to keep the workers in step")
            self.loss_scale = DynamicLossScale()
        hyper = {k: v for k, v in cfg.as_dict().items() if k not in ("loss", "num_classes", "emb_size")}
        if not cfg.sample_rate:
            del hyper["sample_rate"]  # 0: the loss's own default
        self.head = create_loss(cfg.loss, cfg.num_classes, cfg.emb_size, **hyper)
        mx.random.seed(cfg.seed)
        init = legacy_initializer(cfg.network)
        self.net.initialize(init, ctx=self.ctx)
        self.head.initialize(init, ctx=self.ctx)
        self._materialise()
        if cfg.pretrained:
            self._load_pretrained(cfg.pretrained)
        # lr_mult/wd_mult: what the 2018 optimiser applied (get_network, the fc7 flags, and
        # whatever a --pretrained graph declares), read by the Trainer's optimizer as is.
        self.params = gluon.ParameterDict()
        self.params.update(self.net.collect_params())
        self.params.update(self.head.collect_params())
        if cfg.hybridize:
            self.net.hybridize(static_alloc=True, static_shape=True)
            self.head.hybridize(static_alloc=True, static_shape=True)
        from insightgluon.train.lr import LRSchedule
        from insightgluon.train.optim import sgd_params

        # The optimiser runs here, on every worker alike, so its states are saved for an exact resume;
        # a dist_* kvstore only sums the gradients.
        self.trainer = gluon.Trainer(self.params, "sgd", sgd_params(cfg, LRSchedule.from_config(cfg), start_step),
                                     kvstore=kvstore, update_on_kvstore=False)
        if self.distributed:
            self._share_initial_weights(kvstore)
        logger.info("network %s: %d parameter arrays, %.2fM values; head %s with %d classes on %s",
                    cfg.network, len(list(self.net.collect_params().keys())), self._num_values(self.net) / 1e6,
                    cfg.loss, cfg.num_classes, ", ".join(str(c) for c in self.ctx))

    def _share_initial_weights(self, kvstore) -> None:
        """Every worker starts from rank 0's weights before any gradient is pushed.

        Gluon sets its kvstore up at the first ``step``, where rank 0's ``init`` of a key, the other
        workers' pull of it and every worker's first gradients reach the servers unordered: a pull
        before the init aborts the server, one answered after the first gradients were summed takes
        the sum for weights. Here rank 0 initialises every key and pulls it back (its messages reach
        a server in order, so its pull returns once the server holds the value); after a barrier the
        others pull; after another, training starts. (MXNet 1.9's Trainer has no public way to this.)
        """
        import mxnet as mx

        trainer = self.trainer
        trainer._init_kvstore()
        kv = trainer._kvstore

        def pull_all():
            for index, param in enumerate(trainer._params):
                kv.pull(index, out=param.list_data(), priority=-index)
            mx.nd.waitall()

        for index, param in enumerate(trainer._params):
            # a plain copy: oneDNN may hold a weight in its blocked layout, which the kvstore cannot send
            kv.init(index, mx.nd.array(param.list_data()[0].asnumpy(), dtype=param.dtype))
        if kv.rank == 0:
            pull_all()
        kv._barrier()
        if kv.rank != 0:
            pull_all()
        kv._barrier()
        trainer._params_to_init = []

    def _materialise(self) -> None:
        """One inference forward pass so deferred parameter shapes exist before loading states."""
        import mxnet as mx

        h, w = self.cfg.image_hw
        for ctx in self.ctx:
            self.head(self.embed(mx.nd.zeros((1, 3, h, w), ctx=ctx)), mx.nd.zeros((1,), ctx=ctx))
        mx.nd.waitall()  # MXNet keeps the arrays of a pass whose result is dropped unfinished

    def embed(self, x):
        """The backbone's embedding of ``x``, in float32 whatever the compute precision (the
        margin head and the loss run in float32)."""
        import mxnet as mx

        emb = self.net(x)
        return emb if self.cfg.dtype == "fp32" else mx.nd.amp_cast(emb, dtype="float32")

    def _load_pretrained(self, spec: str) -> None:
        """Start from a checkpoint (ours, a 2018 one or a model-zoo file) where names and shapes fit.

        Arrays that do not fit (typically ``fc7`` of another dataset) keep their fresh
        initialisation. Multipliers the checkpoint's graph declares for the backbone (the
        model-zoo MobileFaceNet's 10x weight decay on its head) replace the network's.
        """
        from insightgluon.model_io import checkpoint_paths, parse_model_spec
        from insightgluon.networks.legacy import declared_multipliers, legacy_arrays

        from insightgluon.convert.source import ONNX_SUFFIXES, TORCH_SUFFIXES

        if spec.lower().endswith(TORCH_SUFFIXES + ONNX_SUFFIXES):
            self._load_converted(spec)
            return
        (prefix, epoch), = parse_model_spec(spec)
        path = checkpoint_paths(prefix, epoch)[1]
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: --pretrained checkpoint not found")
        saved, variant = legacy_arrays(self.net, path)
        self._set_matching(saved, path, variant)
        params = self.net.collect_params()
        names = set(params.keys())
        for name, (lr_mult, wd_mult) in declared_multipliers(path, variant).items():
            param = params[name] if name in names else None
            if param is not None and (param.lr_mult, param.wd_mult) != (lr_mult, wd_mult):
                logger.info("pretrained graph declares %s: lr_mult %g, wd_mult %g (network: %g, %g)",
                            name, lr_mult, wd_mult, param.lr_mult, param.wd_mult)
                param.lr_mult, param.wd_mult = lr_mult, wd_mult

    def _load_converted(self, path: str) -> None:
        """Start from an arcface_torch ``.pth`` or an InsightFace ONNX model of ``--network``."""
        from insightgluon.convert.source import load_converted

        converted = load_converted(path, self.cfg.network)
        self._set_matching({name: param.data() for name, param in converted.net.collect_params().items()}, path)

    def _set_matching(self, saved, path: str, variant=None) -> None:
        """Set every parameter of the backbone and the head whose name and shape ``saved`` has."""
        loaded, fresh = 0, []
        for block in (self.net, self.head):
            for name, param in block.collect_params().items():
                value = saved.get(name)
                if value is not None and value.shape == param.shape:
                    param.set_data(value)
                    loaded += 1
                else:
                    fresh.append(name)
        if not loaded:
            raise CheckpointError(f"{path}: no parameter matches network {self.cfg.network}")
        logger.info("pretrained %s%s: loaded %d arrays; re-initialised %d (%s)", path,
                    f" (model-zoo variant {variant.name})" if variant else "", loaded, len(fresh),
                    ", ".join(fresh[:4]) + (" ..." if len(fresh) > 4 else ""))

    def augment(self):
        """The sample augmentation, or None when every augmentation flag is off."""
        cfg = self.cfg
        if not (cfg.rand_mirror or cfg.cutoff or cfg.color):
            return None
        from insightgluon.data.transforms import FaceAugment

        return FaceAugment(rand_mirror=bool(cfg.rand_mirror), cutoff=cfg.cutoff, color=cfg.color)

    # -- training ------------------------------------------------------------------------------
    def step(self, images: np.ndarray, labels: np.ndarray, lr: float, mbatch: int,
             want_ce: bool = False) -> Tuple[float, float, Optional[float]]:
        """Forward, backward and one SGD update on this process's slice of the batch.

        Returns the mean loss, the legacy training accuracy (argmax of the
        margin logits) of the slice, and — when ``want_ce`` — the legacy
        ``--ce-loss`` value (cross-entropy of the first device's margin logits).
        """
        import mxnet as mx
        from mxnet import autograd, gluon

        cfg = self.cfg
        self.head.set_step(mbatch)
        x = mx.nd.array(images, dtype=np.uint8).transpose((0, 3, 1, 2)).astype(np.float32)
        xs = gluon.utils.split_and_load(x, self.ctx, even_split=True)
        ys = gluon.utils.split_and_load(mx.nd.array(labels), self.ctx, even_split=True)
        losses, hits, first_logits = [], [], None
        first_device = self.rank * len(self.ctx)
        with autograd.record():
            for i, (xi, yi) in enumerate(zip(xs, ys)):
                # Dropout draws from a stream seeded by (seed, batch, global device index), so the
                # masks do not depend on how devices are spread over processes, nor on a restart.
                # MXNet's CPU contexts share one generator: seed right before each forward pass.
                mx.random.seed(_mix_seed(cfg.seed, mbatch, first_device + i), ctx=xi.context)
                loss, logits = self.head(self.embed(xi), yi)
                losses.append(loss.sum())
                if logits is not None:
                    first_logits = logits if first_logits is None else first_logits
                    hits.append(self.head.correct(logits, yi))
            scale = 1.0 if self.loss_scale is None else self.loss_scale.scale
            backward = losses if scale == 1.0 else [loss * scale for loss in losses]
        autograd.backward(backward)
        # Gradients are sums over the global batch: one normaliser for all devices and workers.
        if self.loss_scale is None:
            self.trainer.step(cfg.global_batch)
        else:
            self._scaled_update(scale)
        total = sum(float(l.asscalar()) for l in losses)
        correct = sum(float(h.asscalar()) for h in hits)
        n = len(labels)
        ce = None
        if want_ce and first_logits is not None:
            from insightgluon.losses import ce_loss

            ce = ce_loss(first_logits, ys[0])
        return total / n, correct / n, ce

    def _scaled_update(self, scale: float) -> None:
        """fp16: the update from gradients of the loss times ``scale``, skipped on overflow."""
        import mxnet as mx

        self.trainer.allreduce_grads()
        grads = [p.grad(self.ctx[0]) for p in self.params.values() if p.grad_req != "null"]
        finite = bool(mx.nd.multi_all_finite(*grads, num_arrays=len(grads)).asscalar())
        if self.loss_scale.update(finite):
            self.trainer.update(self.cfg.global_batch * scale)
        else:
            logger.info("fp16: gradients overflowed at loss scale %g; step skipped, scale now %g",
                        scale, self.loss_scale.scale)

    # -- state ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def state_arrays(self) -> Iterator[Dict]:
        """Parameters of the first device (``param/NAME``, NDArrays) and optimiser states
        (``trainer``, the Trainer's own file), for :func:`insightgluon.train.checkpoint.save_state`
        while the context is open."""
        arrays = {f"param/{k}": p.data(self.ctx[0]) for k, p in self.params.items()}
        if self.loss_scale is not None:
            arrays["loss_scale"] = np.asarray(self.loss_scale.state(), dtype=np.float64)
        fd, tmp = tempfile.mkstemp(suffix=".states")
        os.close(fd)
        try:
            self.trainer.save_states(tmp)
            arrays["trainer"] = ckpt.BytesFile(tmp)
            yield arrays
        finally:
            os.unlink(tmp)

    def load_state_arrays(self, arrays: Dict[str, np.ndarray], source: str) -> None:
        import mxnet as mx

        for name, param in self.params.items():
            value = arrays.get(f"param/{name}")
            if value is None or tuple(value.shape) != tuple(param.shape):
                found = None if value is None else tuple(value.shape)
                raise CheckpointError(f"{source}: parameter {name}: expected shape {tuple(param.shape)}, "
                                      f"found {found}")
            param.set_data(mx.nd.array(value, dtype=value.dtype))
        if self.loss_scale is not None and "loss_scale" in arrays:
            self.loss_scale.load(arrays["loss_scale"])
        if "trainer" not in arrays:
            logger.warning("%s: no optimiser state (saved by an older dist_sync run): momentum restarts", source)
            return
        fd, tmp = tempfile.mkstemp(suffix=".states")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(arrays["trainer"].tobytes())
            self.trainer.load_states(tmp)
        finally:
            os.unlink(tmp)

    def assert_finite(self, mbatch: int) -> None:
        """Refuse to write parameters that hold NaN/inf."""
        for name, param in self.params.items():
            if not np.isfinite(param.data(self.ctx[0]).sum().asscalar()):
                raise NonFiniteLossError(f"batch {mbatch}: parameter {name} holds NaN/inf (diverged: lower "
                                         "--lr); nothing was saved")

    def checksum(self) -> float:
        """Sum of |trainable parameters| on the first device (identical across dist workers).

        Batch-norm running statistics are left out: each worker keeps its own.
        """
        return float(sum(np.abs(p.data(self.ctx[0]).asnumpy()).astype(np.float64).sum()
                         for p in self.params.values() if p.grad_req != "null"))

    @staticmethod
    def _num_values(block) -> int:
        return int(sum(np.prod(p.shape) for p in block.collect_params().values()))
