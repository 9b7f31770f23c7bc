"""Pad a series to a multiple of PAD_MULTIPLE bars with a 0/1 mask, so that fits on series of different lengths
(instruments, simulated checks) share one compiled program. Padding goes at the end and carries zero weight."""

from __future__ import annotations

import numpy as np

PAD_MULTIPLE = 16384


def pad_with_mask(series: np.ndarray, multiple: int = PAD_MULTIPLE) -> tuple[np.ndarray, np.ndarray]:
    n = series.shape[0]
    padded_length = -(-n // multiple) * multiple
    padded = np.zeros(padded_length, dtype=series.dtype)
    padded[:n] = series
    mask = np.zeros(padded_length, dtype=series.dtype)
    mask[:n] = 1.0
    return padded, mask
