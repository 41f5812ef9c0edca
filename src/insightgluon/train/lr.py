"""Learning-rate schedules as pure functions of the global batch counter.

The legacy schedule multiplies the lr by 0.1 when the 1-based batch counter
``mbatch`` reaches ``beta_freeze + step`` for each step (REFERENCE §7). Because
the lr is a function of the counter alone, a resumed run reproduces it exactly.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple


@dataclass(frozen=True)
class LRSchedule:
    """lr for a 1-based global batch counter.

    Parameters
    ----------
    base_lr : float
        Starting learning rate.
    steps : sequence of int
        Batch counters where the lr is multiplied by ``factor`` ('step' mode).
    shift : int
        Added to every step (the legacy ``beta_freeze`` shift).
    mode : {'step', 'poly'}
        'poly' decays ``base_lr * (1 - t/max_steps) ** power`` (arcface_torch).
    warmup_steps : int
        Linear warm-up from ``base_lr / warmup_steps`` over the first batches.
    """

    base_lr: float
    steps: Tuple[int, ...] = ()
    shift: int = 0
    mode: str = "step"
    factor: float = 0.1
    warmup_steps: int = 0
    max_steps: int = 0
    power: float = 2.0

    def __call__(self, mbatch: int) -> float:
        if self.mode == "poly":
            frac = min(1.0, max(0, mbatch - 1) / max(1, self.max_steps))
            lr = self.base_lr * (1.0 - frac) ** self.power
        else:
            drops = sum(1 for s in self.steps if mbatch >= s + self.shift)
            lr = self.base_lr * self.factor ** drops
        if self.warmup_steps and mbatch <= self.warmup_steps:
            lr *= mbatch / self.warmup_steps
        return lr

    @classmethod
    def from_config(cls, cfg) -> "LRSchedule":
        """The schedule of a resolved :class:`~insightgluon.config.TrainConfig`."""
        return cls(base_lr=cfg.lr, steps=tuple(cfg.lr_step_list), shift=cfg.beta_freeze,
                   mode=cfg.lr_schedule, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps,
                   power=cfg.poly_power)

    def boundaries(self) -> Sequence[int]:
        """Batch counters where the step schedule changes the lr (for logging)."""
        return [s + self.shift for s in self.steps]
