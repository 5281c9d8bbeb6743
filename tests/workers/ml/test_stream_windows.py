"""Live windows from a stream pushed in uneven chunks are the windows split_windows cuts from the whole recording."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.ml.stream_windows import StreamWindower
from workers.ml.windows import InputBlockError, TimeSeriesInput, split_windows


def _recording(seconds: float, hz: float, axes: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * hz)) / hz
    base = np.stack([np.sin(2 * np.pi * (1.3 + a) * t + a) * 4 for a in range(axes)], axis=1)
    return (base + rng.normal(0, 0.3, base.shape) + 9.8 * (np.arange(axes) == axes - 1)).astype(np.float32)


def _push_in_chunks(windower: StreamWindower, values: np.ndarray, seed: int = 1, most: int = 40) -> list:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(values):
        n = int(rng.integers(1, most + 1))
        out.extend(windower.push(values[i : i + n]))
        i += n
    return out


@pytest.mark.parametrize("stream_hz, impulse_hz, window_ms, increase_ms, most", [
    (100.0, 100.0, 1000, 250, 40), (100.0, 50.0, 1000, 250, 40), (62.5, 100.0, 1000, 250, 40),
    (50.0, 62.5, 1000, 250, 40),
    # One row at a time, and windows far apart: the next window starts beyond the rows received.
    (62.5, 100.0, 2000, 500, 1), (60.0, 100.0, 500, 1500, 3), (100.0, 100.0, 500, 1500, 1)])
def test_stream_windows_equal_the_whole_recordings_windows(stream_hz, impulse_hz, window_ms, increase_ms, most):
    inp = TimeSeriesInput(window_size_ms=window_ms, window_increase_ms=increase_ms, frequency_hz=impulse_hz)
    values = _recording(12.0, stream_hz)
    expected, starts = split_windows(values, 1000.0 / stream_hz, inp)
    got = _push_in_chunks(StreamWindower(inp, interval_ms=1000.0 / stream_hz, axes=3), values, most=most)
    # Resampled, the windows whose filter reaches before the first row or after the last are left out.
    skip = int(np.argmin(np.abs(starts - got[0].start_ms)))
    assert skip == 0 if stream_hz == impulse_hz else 1 <= skip <= 2
    assert len(expected) - skip - 5 <= len(got) <= len(expected) - skip and len(got) >= 5
    assert [w.start_ms for w in got] == pytest.approx(list(starts[skip : skip + len(got)]))
    for w, e in zip(got, expected[skip:]):
        assert w.values.shape == e.shape and w.values.dtype == np.float32
        np.testing.assert_allclose(w.values, e, atol=1e-4, rtol=1e-5)


def test_at_the_same_rate_a_window_is_given_as_soon_as_its_last_row_arrives():
    inp = TimeSeriesInput(window_size_ms=500, window_increase_ms=100, frequency_hz=100.0)
    w = StreamWindower(inp, interval_ms=10, axes=2)
    rows = np.arange(100, dtype=np.float32).reshape(50, 2)
    assert w.push(rows[:49]) == []
    first = w.push(rows[49:50])
    assert len(first) == 1 and first[0].start_ms == 0 and np.array_equal(first[0].values, rows)
    more = w.push(np.ones((20, 2)))
    assert [x.start_ms for x in more] == [100.0, 200.0]
    assert len(w.buf) <= 50  # rows no future window needs are dropped


def test_rows_of_the_wrong_width_or_with_nan_are_refused():
    w = StreamWindower(TimeSeriesInput(), interval_ms=10, axes=3)
    with pytest.raises(InputBlockError, match=r"\[n, 3\]"):
        w.push(np.zeros((4, 2)))
    with pytest.raises(InputBlockError, match="NaN"):
        w.push(np.full((4, 3), np.nan))
    with pytest.raises(InputBlockError, match="interval_ms"):
        StreamWindower(TimeSeriesInput(), interval_ms=0, axes=3)


@settings(max_examples=30, deadline=None)
@given(stream_hz=st.sampled_from([50.0, 60.0, 62.5, 100.0, 125.0]), impulse_hz=st.sampled_from([50.0, 62.5, 100.0]),
       window_ms=st.sampled_from([200, 500, 1000]), increase_ms=st.sampled_from([40, 100, 500, 1500]),
       chunks=st.lists(st.integers(1, 60), min_size=1, max_size=8), seed=st.integers(0, 3))
def test_any_chunking_gives_the_whole_recordings_windows(stream_hz, impulse_hz, window_ms, increase_ms, chunks, seed):
    inp = TimeSeriesInput(window_size_ms=window_ms, window_increase_ms=increase_ms, frequency_hz=impulse_hz)
    values = _recording(6.0, stream_hz, axes=2, seed=seed)
    expected, starts = split_windows(values, 1000.0 / stream_hz, inp)
    windower = StreamWindower(inp, interval_ms=1000.0 / stream_hz, axes=2)
    got, i, k = [], 0, 0
    while i < len(values):
        got += windower.push(values[i : i + chunks[k % len(chunks)]])
        i += chunks[k % len(chunks)]
        k += 1
    for w in got:
        j = int(np.argmin(np.abs(starts - w.start_ms)))
        assert starts[j] == pytest.approx(w.start_ms)
        np.testing.assert_allclose(w.values, expected[j], atol=1e-4, rtol=1e-5)
    assert [w.start_ms for w in got] == sorted({w.start_ms for w in got})
