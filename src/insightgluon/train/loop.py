"""The training loop: data -> backbone -> loss head -> SGD, with callbacks and exact resume.

:func:`train` reads top to bottom: kvstore and devices, data, backbone and
head, initialisation (pretrained weights or a saved state), optimiser,
callbacks, then the batch loop. All randomness is a function of
``(seed, batch counter)`` — data order and augmentation (see
:mod:`insightgluon.train.pipeline`) and dropout (MXNet's generator is reseeded
every batch) — so a run resumed from its last training state continues
exactly as if it had never stopped.
"""
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List


from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.train import checkpoint as ckpt
from insightgluon.train.callbacks import (SpeedMonitor, TensorBoardLogger, VerificationCallback,
                                          check_finite)
from insightgluon.train.lr import LRSchedule
from insightgluon.train.model import TrainModel
from insightgluon.train.pipeline import AugmentedSamples, BatchSchedule, make_loader

logger = logging.getLogger(__name__)

# Fields that must match between a saved training state and the run resuming it.
RESUME_KEYS = ("network", "emb_size", "loss", "num_classes", "global_batch", "seed", "image_hw",
               "version_se", "version_input", "version_output", "version_unit", "version_act",
               "version_multiplier", "dtype")
# What a state written before a key existed was trained with.
RESUME_DEFAULTS = {"dtype": "fp32"}


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int
    epoch: int
    last_loss: float
    history: List[Dict[str, float]] = field(default_factory=list)
    verification: List[Dict[str, float]] = field(default_factory=list)
    saved: List[str] = field(default_factory=list)
    state_file: str = ""
    checksum: float = 0.0


def _dataset(cfg):
    from insightgluon.data.recordio import FaceRecordDataset

    ds = FaceRecordDataset(cfg.data_dir, images_filter=cfg.images_filter)
    if ds.num_classes != cfg.num_classes:
        raise ConfigError(f"{cfg.data_dir}: dataset has {ds.num_classes} classes but the config says "
                          f"{cfg.num_classes}")
    return ds


def _schedule(cfg, ds, rank: int, workers: int, identity_batches: bool) -> BatchSchedule:
    sampler = None
    if identity_batches:
        from insightgluon.data.samplers import IdentityBalancedSampler

        def sampler(seed):
            return IdentityBalancedSampler(ds.labels, cfg.images_per_identity, cfg.per_batch_size, seed=seed)
    try:
        return BatchSchedule(ds.labels, cfg.global_batch, cfg.seed, rank, workers, sampler)
    except ValueError as err:
        raise ConfigError(f"{cfg.data_dir}: {err}") from None


class Session:
    """One training run over a resolved :class:`~insightgluon.config.TrainConfig`."""

    def __init__(self, cfg, kv=None, rank: int = 0):
        # kvstore=None would let the per-device copies drift apart silently.
        self.cfg, self.kv, self.rank = cfg, kv if kv is not None else cfg.kvstore, rank
        self.writes = not cfg.dry_run and rank == 0
        self.model = TrainModel(cfg)
        self.lr = LRSchedule.from_config(cfg)
        self.policy = ckpt.CheckpointPolicy(cfg.ckpt)
        self.state_file = ckpt.state_path(cfg.prefix)
        self.step = 0
        self.last_good_state = ""
        self.saved_step = -1  # the batch the state on disk was written at

    # -- state ---------------------------------------------------------------------------------
    def save_state(self, epoch: int) -> None:
        """Write the full training state (rank 0, not in dry-run mode)."""
        if not self.writes:
            return
        self.model.assert_finite(self.step)
        meta = {"step": self.step, "epoch": epoch, "lr": self.lr(self.step + 1),
                "policy": self.policy.state(), "rng": ckpt.rng_states(), "config": self.cfg.as_dict()}
        with self.model.state_arrays() as arrays:
            ckpt.save_state(self.state_file, arrays, meta)
        self.last_good_state = self.state_file
        self.saved_step = self.step

    def restore(self, path: str, loaded=None) -> None:
        """Continue from a training state: parameters, optimiser, counters, RNG."""
        arrays, meta = loaded or ckpt.load_state(path)
        saved = meta.get("config", {})
        for key in RESUME_KEYS:
            mine = getattr(self.cfg, key)
            theirs = saved.get(key, RESUME_DEFAULTS.get(key))
            mine = list(mine) if isinstance(mine, tuple) else mine
            if theirs != mine:
                raise CheckpointError(f"{path}: saved with {key}={theirs!r}, this run has {key}={mine!r}")
        self.model.load_state_arrays(arrays, path)
        self.step = int(meta["step"])
        policy = meta["policy"]
        self.policy = ckpt.CheckpointPolicy(self.cfg.ckpt, policy["msave"], policy["highest"])
        ckpt.set_rng_states(meta["rng"])
        self.last_good_state = path
        logger.info("resumed from %s at batch %d (epoch %d)", path, self.step, meta["epoch"])

    def _resume_path(self) -> str:
        """The state to resume from ('' for a fresh start)."""
        cfg = self.cfg
        if not cfg.resume:
            return ""
        path = self.state_file if cfg.resume == "auto" else cfg.resume
        if cfg.resume == "auto" and not os.path.isfile(path):
            logger.warning("--resume: %s does not exist yet; starting from batch 0", path)
            return ""
        return path

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        ds = _dataset(cfg)
        resume_from = self._resume_path()
        loaded = ckpt.load_state(resume_from) if resume_from else None
        self.model.build(ds, self.kv, self.rank, loaded[1]["step"] if loaded else 0)
        schedule = _schedule(cfg, ds, self.rank, cfg.num_workers,
                             bool(getattr(self.model.head, "needs_identity_batches", False)))
        # Identity-balanced epochs vary in length: the schedule itself stops at --end-epoch.
        stop = cfg.max_steps or sys.maxsize
        if loaded:
            self.restore(resume_from, loaded)
        verify = VerificationCallback(cfg.data_dir, cfg.targets, cfg.image_hw, self.model.ctx[:1],
                                      cfg.val_batch_size) if self.rank == 0 else None
        if verify is not None and not len(verify) and cfg.ckpt in (1, 3):
            logger.warning("no verification set found: --ckpt %d saves only after a verification", cfg.ckpt)
        tb = TensorBoardLogger(tensorboard_dir(cfg.prefix) if self.writes and cfg.tensorboard else "")
        result = TrainResult(steps=self.step, epoch=schedule.locate(self.step)[0], last_loss=float("nan"))
        if self.step >= stop or result.epoch >= cfg.end_epoch:
            logger.info("nothing to do: batch %d (epoch %d) already reached --max-steps/--end-epoch",
                        self.step, result.epoch)
        samples = AugmentedSamples(ds, self.model.augment(), cfg.image_hw, cfg.seed)
        loader = make_loader(samples, schedule.window(self.step, stop, cfg.end_epoch), cfg.data_workers)
        speed = SpeedMonitor(cfg.global_batch, cfg.frequent, stop if cfg.max_steps else 0, self.step,
                             progress=self.rank == 0)
        if verify is not None and cfg.verify_first and self.step == 0:
            accuracies, results = verify(self.model.net, 0)
            tb.verification(0, results)
            result.verification.append({"step": 0, **{r.name: r.accuracy for r in results}})
        try:
            for images, labels, epoch, first in loader:
                self._train_batch(images, labels, epoch, first, schedule, speed, verify, tb, result)
        finally:
            speed.close()
            tb.close()
        if self.saved_step != self.step:  # (a run ending on a --state-every batch has just written it)
            self.save_state(result.epoch)
        result.state_file = self.last_good_state if self.writes else ""
        result.checksum = self.model.checksum()
        logger.info("finished at batch %d; parameter checksum %.10e", self.step, result.checksum)
        return result

    def _train_batch(self, images, labels, epoch, first, schedule, speed, verify, tb, result) -> None:
        cfg = self.cfg
        mbatch = self.step + 1
        lr = self.lr(mbatch)
        want_ce = cfg.ce_loss and mbatch % cfg.frequent == 0
        loss, acc, ce = self.model.step(images, labels, lr, mbatch, want_ce)
        check_finite(loss, mbatch, self.last_good_state)
        self.step = mbatch
        if cfg.progress_beacon:  # the launcher's record of how far this worker got (kept out of its log)
            from insightgluon.train.launcher import BEACON

            sys.stderr.write(f"{BEACON} rank={self.rank} batch={mbatch}\n")
            sys.stderr.flush()
        batch_in_epoch = first // cfg.global_batch + 1
        result.steps, result.epoch, result.last_loss = mbatch, epoch, loss
        stats = speed.update(mbatch, epoch, batch_in_epoch, loss, acc, lr)
        if stats is not None:
            if ce is not None:
                stats["lossvalue"] = ce
                logger.info("Epoch[%d] Batch [%d]\tlossvalue=%f", epoch, batch_in_epoch, ce)
            result.history.append(dict(stats, step=mbatch))
            tb.scalars(mbatch, stats, prefix="train/")
        if mbatch % 1000 == 0:
            logger.info("lr-batch-epoch: %g %d %d", lr, batch_in_epoch - 1, epoch)
        tic = time.time()
        if verify is not None and mbatch % cfg.verbose == 0:
            self._verify(mbatch, verify, tb, result)
        if mbatch % (cfg.state_every or cfg.verbose) == 0:
            self.save_state(epoch)
        speed.exclude(time.time() - tic)

    def _verify(self, mbatch, verify, tb, result) -> None:
        accuracies, results = verify(self.model.net, mbatch)
        tb.verification(mbatch, results)
        result.verification.append({"step": mbatch, **{r.name: r.accuracy for r in results}})
        index = self.policy.decide(accuracies)
        if index is not None and self.writes:
            self.model.assert_finite(mbatch)
            logger.info("saving %d", index)
            result.saved.append(ckpt.save_deployable(self.model.net, self.cfg.prefix, index)[1])
        logger.info("[%d]Accuracy-Highest: %1.5f", mbatch, self.policy.highest[-1])


def tensorboard_dir(prefix: str) -> str:
    """TensorBoard event directory of a checkpoint prefix."""
    return os.path.join(os.path.dirname(os.path.abspath(prefix)), "tensorboard", os.path.basename(prefix))


def train(cfg) -> TrainResult:
    """Train with a resolved config; returns a :class:`TrainResult`.

    Raises
    ------
    NonFiniteLossError
        The loss became NaN/inf; the last training state on disk is intact.
    """
    if not cfg.resolved:
        raise ConfigError("train(): call TrainConfig.resolve() first")
    kv, rank = None, 0
    if cfg.kvstore.startswith("dist"):
        from insightgluon.train.distributed import create_kvstore

        kv, rank, workers = create_kvstore(cfg.kvstore)
        if workers != cfg.num_workers:
            raise ConfigError(f"kvstore reports {workers} workers, DMLC_NUM_WORKER says {cfg.num_workers}")
        logger.info("distributed worker %d of %d", rank, workers)
    session = Session(cfg, kv=kv, rank=rank)
    handler = None
    if session.writes:
        handler = _log_to_file(f"{cfg.prefix}-train.log")
        cfg.save_yaml(f"{cfg.prefix}-config.yml")
    try:
        cfg.log(logger)
        if cfg.dry_run:
            logger.info("dry run (parameter-adjustment mode): no checkpoint, state, log or TensorBoard "
                        "file is written")
        return session.run()
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _log_to_file(path: str) -> logging.Handler:
    """Copy every log line of this run to ``path`` (appending, so resumed runs keep history)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
