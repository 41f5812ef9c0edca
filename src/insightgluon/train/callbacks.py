"""Small callables the training loop calls: speed/ETA log, verification, TensorBoard, NaN guard.

Each one owns one concern and keeps its own (resumable) state; none exits the
process — the loop decides what to do with what they report.
"""
import logging
import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from insightgluon.errors import InsightGluonError

logger = logging.getLogger(__name__)


class NonFiniteLossError(InsightGluonError):
    """The training loss became NaN or infinite."""


class SpeedMonitor:
    """Speed / loss / accuracy / lr line every ``frequent`` batches, and a progress report.

    The line keeps the MXNet Speedometer shape of the legacy logs
    (``Epoch[e] Batch [a-b]\\tSpeed: X samples/sec\\tacc=...``) and adds loss,
    lr and the ETA to ``total_steps`` when there is one.
    """

    def __init__(self, batch_size: int, frequent: int, total_steps: int = 0, start_step: int = 0,
                 progress: bool = True):
        self.batch_size, self.frequent, self.total_steps = batch_size, frequent, total_steps
        self._start = start_step
        self._tic = time.time()
        self._loss = self._acc = 0.0
        self._count = 0
        self._bar = None
        if progress:
            from insightgluon.progress import Progress

            # Off a terminal the speed lines are the progress report; the bar only adds a
            # line when none came for 30 s (a large network on a CPU takes minutes per line).
            self._bar = Progress(total=total_steps or None, desc="train", unit="batch", initial=start_step,
                                 leave=False, every_fraction=0)

    def update(self, mbatch: int, epoch: int, batch_in_epoch: int, loss: float, acc: float,
               lr: float) -> Optional[Dict[str, float]]:
        """Account one batch; every ``frequent`` batches log a line and return its figures."""
        self._loss += loss
        self._acc += acc
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
        if mbatch % self.frequent:
            return None
        now = time.time()
        speed = self._count * self.batch_size / max(now - self._tic, 1e-9)
        stats = {"speed": speed, "loss": self._loss / self._count, "acc": self._acc / self._count, "lr": lr}
        eta = ""
        if self.total_steps:
            seconds = (self.total_steps - mbatch) * self.batch_size / max(speed, 1e-9)
            eta = "\tETA: %s" % time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))
        logger.info("Epoch[%d] Batch [%d-%d]\tSpeed: %.2f samples/sec\tacc=%f\tloss=%f\tlr=%g%s",
                    epoch, max(1, batch_in_epoch - self._count + 1), batch_in_epoch, speed, stats["acc"],
                    stats["loss"], lr, eta)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}")
            self._bar.touch()
        self._tic, self._loss, self._acc, self._count = now, 0.0, 0.0, 0
        return stats

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (verification, checkpointing) out of the next speed figure."""
        self._tic += seconds

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def check_finite(loss: float, mbatch: int, last_state: str) -> None:
    """Raise :class:`NonFiniteLossError` with one clear line when ``loss`` is NaN/inf."""
    if not math.isfinite(loss):
        where = f"; the last good training state is {last_state}" if last_state else ""
        raise NonFiniteLossError(f"batch {mbatch}: training loss is {loss} (diverged: lower --lr, check "
                                 f"--margin-* or use a softmax warm-up){where}")


class VerificationCallback:
    """Verification on ``DATA_DIR/<target>.bin`` sets with the legacy log lines.

    Prints, per target, ``[lfw][2000]XNorm: ...`` and
    ``[lfw][2000]Accuracy-Flip: 0.xxxxx+-0.xxxxx``; returns the flip accuracies
    in target order for the checkpoint policy.
    """

    def __init__(self, data_dir: str, targets: Sequence[str], image_hw: Tuple[int, int], ctx_list,
                 batch_size: int = 64):
        from insightgluon.eval.verification import VerificationSet

        self.sets = []
        for name in targets:
            path = os.path.join(data_dir, f"{name}.bin")
            if os.path.isfile(path):
                logger.info("loading verification set %s", path)
                self.sets.append(VerificationSet.load(path, image_size=tuple(image_hw)))
            else:
                logger.info("verification target %s: %s not found, skipped", name, path)
        self.ctx_list, self.batch_size = ctx_list, batch_size

    def __len__(self) -> int:
        return len(self.sets)

    def __call__(self, net, mbatch: int) -> Tuple[List[float], list]:
        from insightgluon.eval.verification import verify_model

        accuracies, results = [], []
        if self.sets:
            logger.info("testing verification..")
        for vset in self.sets:
            tic = time.time()
            result = verify_model(net, vset, self.ctx_list, batch_size=self.batch_size)
            logger.info("infer time %.1f", time.time() - tic)
            logger.info("[%s][%d]XNorm: %f", vset.name, mbatch, result.xnorm)
            logger.info("[%s][%d]Accuracy-Flip: %1.5f+-%1.5f", vset.name, mbatch, result.accuracy, result.std)
            accuracies.append(float(result.accuracy))
            results.append(result)
        return accuracies, results


class TensorBoardLogger:
    """Scalars for TensorBoard through tensorboardX (no-op when ``logdir`` is empty)."""

    def __init__(self, logdir: str = ""):
        self.logdir = logdir
        self._writer = None
        if logdir:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=logdir)

    def scalars(self, step: int, values: Dict[str, float], prefix: str = "") -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(f"{prefix}{key}", value, step)

    def verification(self, step: int, results) -> None:
        for r in results:
            self.scalars(step, {"accuracy": r.accuracy, "xnorm": r.xnorm}, prefix=f"verification/{r.name}/")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
