"""Calibration statistics: the one Gram accumulator and the one damping policy."""
from reprise.llm.gram.accumulator import GramAccumulator
from reprise.llm.gram.damping import (
    RETRY_FLOOR,
    DampingRecord,
    damped_cholesky,
    damped_inverse_cholesky,
)

__all__ = ["GramAccumulator", "DampingRecord", "damped_cholesky", "damped_inverse_cholesky", "RETRY_FLOOR"]
