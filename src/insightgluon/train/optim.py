"""The SGD optimiser of a run, with the lr schedule inside it.

The schedule travels with the optimiser as an MXNet ``LRScheduler`` driven by
the optimiser's own update counter (1 for the first batch), as in the 2018
``Module``; it would also hold where an optimiser runs on parameter servers,
which never see a worker's ``set_learning_rate``.
"""
# Servers unpickle this class while ``import mxnet`` is still running (the server loop starts
# inside it), so import the submodule itself rather than an attribute of the package.
from mxnet.lr_scheduler import LRScheduler

from insightgluon.train.lr import LRSchedule


class ScheduledLR(LRScheduler):
    """``lr = schedule(num_update)``; picklable (servers unpickle it from this module)."""

    def __init__(self, schedule: LRSchedule):
        super().__init__(base_lr=schedule.base_lr)
        self.schedule = schedule

    def __call__(self, num_update: int) -> float:
        return self.schedule(max(1, int(num_update)))


def sgd_params(cfg, schedule: LRSchedule, start_step: int = 0) -> dict:
    """``gluon.Trainer`` optimiser parameters: legacy SGD with the scheduled lr."""
    return {"learning_rate": cfg.lr, "momentum": cfg.mom, "wd": cfg.wd,
            "lr_scheduler": ScheduledLR(schedule), "begin_num_update": int(start_step)}
