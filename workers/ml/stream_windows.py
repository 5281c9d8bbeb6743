"""Cutting a live stream into the impulse's windows as rows arrive, resampled as a whole recording would be."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# The windows module owns the window arithmetic; reusing its step keeps live windows on the same grid
# as training windows.
from workers.ml.windows import (
    InputBlockError,
    TimeSeriesInput,
    _increase_length,
    resample,
    window_length,
)


@dataclass(frozen=True)
class StreamWindow:
    start_ms: float  # stream time of the window's first value (0 = the first row pushed)
    values: np.ndarray  # float32 [window_length, axes] at the impulse's frequency


class StreamWindower:
    """push() rows taken every interval_ms; it returns each window of the input block that became
    complete. Windows start every window_increase_ms from the first row, like split_windows over one
    long recording. When the stream's rate differs from the impulse's frequency, each window is
    resampled from a stretch of rows wide enough that resample_poly's filter sees real data on both
    sides, and that stretch starts on the polyphase period, so a live window equals the window that
    split_windows cuts from the whole recording (to float rounding). That costs a little latency: a
    window is ready a filter half-length (10 / min(rate, frequency) s) after its last value. For the
    same reason the first windows, whose filter would reach before the first row, are left out: a live
    stream is joined mid-signal, and zeros before it would look like a motion nobody made."""

    def __init__(self, inp: TimeSeriesInput, *, interval_ms: float, axes: int):
        inp.validate()
        if not (isinstance(interval_ms, (int, float)) and math.isfinite(interval_ms) and interval_ms > 0):
            raise InputBlockError(f"interval_ms must be positive, got {interval_ms!r}")
        if not isinstance(axes, int) or axes < 1:
            raise InputBlockError(f"axes must be a positive integer, got {axes!r}")
        self.inp, self.interval_ms, self.axes = inp, float(interval_ms), axes
        self.src_hz, self.dst_hz = 1000.0 / self.interval_ms, float(inp.frequency_hz)
        self.win, self.step = window_length(inp), _increase_length(inp)
        self.same_rate = self.src_hz == self.dst_hz
        # The same rational approximation resample() uses, so raw and resampled indices line up.
        ratio = Fraction(self.dst_hz / self.src_hz).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator
        # resample_poly's filter reaches 10 * max(up, down) taps at the up-sampled rate to each side.
        self.margin = 0 if self.same_rate else math.ceil(10 * max(self.up, self.down) / self.up) + 1
        # The first window on the grid whose stretch starts at or after the first row.
        self.first = self.step * math.ceil(self.margin * self.up / self.down / self.step)
        self.buf = np.zeros((0, axes), np.float64)
        self.buf_start = 0  # raw index of buf[0]
        self.received = 0  # raw rows pushed so far
        self.next_window = 0

    def _span(self, k: int) -> tuple[int, int, int]:
        """Raw rows [lo, hi) window k needs, and the window's offset into their resampled form."""
        first = self.first + k * self.step  # index on the resampled grid
        if self.same_rate:
            return first, first + self.win, 0
        # Start on a multiple of `down` raw rows: there the resampled grid of the stretch coincides with
        # the whole recording's (resample_poly is periodic with period `down` in its input).
        lo = max(0, math.floor((first * self.down / self.up - self.margin) / self.down)) * self.down
        hi = math.ceil((first + self.win) * self.down / self.up) + self.margin
        return lo, hi, first - lo * self.up // self.down

    def push(self, rows: np.ndarray) -> list[StreamWindow]:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.axes:
            raise InputBlockError(f"rows must be [n, {self.axes}], got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise InputBlockError("rows hold NaN or infinite values")
        self.buf = np.concatenate([self.buf, rows]) if len(self.buf) else rows.copy()
        self.received += len(rows)
        out: list[StreamWindow] = []
        while True:
            lo, hi, offset = self._span(self.next_window)
            if self.received < hi:
                break
            segment = self.buf[lo - self.buf_start : hi - self.buf_start]
            if self.same_rate:
                window = segment
            else:
                window = resample(segment, self.src_hz, self.dst_hz)[offset : offset + self.win]
            start = self.first + self.next_window * self.step
            out.append(StreamWindow(start * 1000.0 / self.dst_hz, window.astype(np.float32)))
            self.next_window += 1
        # The next window may start beyond the rows received so far: never drop rows not yet received.
        keep_from = min(self._span(self.next_window)[0], self.received)
        if keep_from > self.buf_start:
            self.buf = self.buf[keep_from - self.buf_start :]
            self.buf_start = keep_from
        return out
