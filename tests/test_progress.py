"""Progress lines of the long phases: one every few seconds with what is going on and the time left."""

from __future__ import annotations

import io

from vibgan.progress import Progress, format_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_are_throttled_and_estimate_the_time_left():
    clock, out = Clock(), io.StringIO()
    p = Progress("calibration", 10, every=3.0, stream=out, clock=clock)
    for i in range(10):  # 1 s per unit of work
        p.update(i, f"trial {i + 1}/10")
        clock.t += 1.0
    p.update(10, "knobs chosen")
    lines = out.getvalue().splitlines()
    assert lines[0] == "calibration: trial 1/10 [0 %, 0 s so far, estimating the time left]"
    assert lines[1] == "calibration: trial 4/10 [30 %, 3 s so far, about 7 s left]"  # the rate so far: 1 s per unit
    assert len(lines) == 5 and lines[-1] == "calibration: knobs chosen [100 %, 10 s so far, done]"
    quiet = Progress("x", 3, enabled=False, stream=out, clock=clock)
    quiet(1, 3, "nothing")
    assert quiet.lines == 0 and out.getvalue().count("\n") == 5


def test_format_seconds():
    assert [format_seconds(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]
