"""Timing helpers shared by the benchmarks: events per second by wall clock and by CPU time, and the machine load."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """Events per second of one measurement: by wall clock, and per core of CPU time the process used."""

    events: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.events / self.cpu_s if self.cpu_s > 0 else float("nan")


def measure(fn, events: int, repeat: int = 3, min_seconds: float = 0.0) -> Rate:
    """The best (shortest wall clock) of `repeat` calls of fn(), each processing `events` events; calls repeat
    until min_seconds of wall clock have been spent, so that short calls are averaged."""
    best = None
    for _ in range(repeat):
        calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while True:
            fn()
            calls += 1
            wall = time.perf_counter() - wall0
            if wall >= min_seconds:
                break
        rate = Rate(events * calls, wall, time.process_time() - cpu0)
        if best is None or rate.per_s > best.per_s:
            best = rate
    return best


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def human(rate: float) -> str:
    """Events/s with a unit: 12.3 M, 456 k."""
    if rate != rate:
        return "-"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k"
    return f"{rate:.0f}"
