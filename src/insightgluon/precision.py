"""Compute precision of training and evaluation (``--dtype fp32 | bf16 | fp16``).

Parameters, optimiser states and checkpoints are float32 whatever the compute
precision: the networks cast their inputs and weights per layer (see
:func:`insightgluon.nn.set_compute_dtype`), BatchNorm keeps float32 statistics,
and the margin head and the loss run in float32 on a float32 embedding.

* ``bf16``: bfloat16 on CPUs with the ``avx512_bf16`` or AMX instructions, where
  oneDNN's bfloat16 convolutions are faster than float32. Without them MXNet
  would emulate it, slower than float32, so it is refused.
* ``fp16``: float16 on GPUs (``--gpus``), with dynamic loss scaling.
"""
from typing import Iterable, Optional, Sequence

from insightgluon.errors import ConfigError

# --dtype value -> MXNet dtype name
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# CPU flags (Linux /proc/cpuinfo) with native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The instruction-set flags of this CPU (empty when they cannot be read)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_dtype(dtype: str, contexts: Sequence[str], flags: Optional[Iterable[str]] = None) -> str:
    """Validate ``--dtype`` for the devices of a run; return MXNet's dtype name.

    Parameters
    ----------
    dtype : str
        ``fp32``, ``bf16`` or ``fp16``.
    contexts : list of str
        ``["cpu(0)", ...]`` or ``["gpu(0)", ...]``.
    flags : iterable of str, optional
        CPU flags (default: this machine's), for the bf16 check.

    Raises
    ------
    ConfigError
        One line: an unknown value, bf16 on a GPU or on a CPU without bfloat16
        instructions, fp16 on a CPU.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    on_gpu = any(str(c).startswith("gpu") for c in contexts)
    if dtype == "bf16":
        if on_gpu:
            raise ConfigError("--dtype bf16 is for CPUs; on GPUs use --dtype fp16")
        present = set(cpu_flags() if flags is None else flags)
        if not present & set(BF16_CPU_FLAGS):
            raise ConfigError("--dtype bf16: this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16), "
                              "so bfloat16 would be emulated and slower than fp32; use --dtype fp32")
    if dtype == "fp16" and not on_gpu:
        raise ConfigError("--dtype fp16 needs GPUs (--gpus); on a CPU with bfloat16 instructions use --dtype bf16")
    return DTYPES[dtype]


class DynamicLossScale:
    """float16 loss scaling: small gradients survive float16 when the loss is scaled up first.

    The loss is multiplied by :attr:`scale` before ``backward`` and the gradients divided by
    it in the update. A step whose gradients overflow is skipped and the scale halved; after
    ``window`` steps without overflow it doubles again. Its state goes into the training
    state, so a resumed fp16 run continues with the same scale.
    """

    def __init__(self, scale: float = 2.0 ** 16, window: int = 2000, minimum: float = 1.0):
        self.scale, self.window, self.minimum = float(scale), int(window), float(minimum)
        self.good_steps = 0

    def update(self, finite: bool) -> bool:
        """Account one step whose gradients were ``finite``; return whether to apply it."""
        if not finite:
            self.scale = max(self.scale / 2.0, self.minimum)
            self.good_steps = 0
            return False
        self.good_steps += 1
        if self.good_steps >= self.window:
            self.scale *= 2.0
            self.good_steps = 0
        return True

    def state(self) -> list:
        return [self.scale, float(self.good_steps)]

    def load(self, state: Sequence[float]) -> None:
        self.scale, self.good_steps = float(state[0]), int(state[1])
