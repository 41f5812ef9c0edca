"""The figure every parity check here compares two models' outputs by."""
import numpy as np


def max_relative(got: np.ndarray, reference: np.ndarray) -> float:
    """``max |got - reference| / max |reference|`` (infinite when ``got`` is not finite)."""
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.abs(got - reference).max()) / max(float(np.abs(reference).max()), 1e-12)
