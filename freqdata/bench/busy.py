"""How busy the machine was while a benchmark measured: the share of all its CPUs that
*other* processes used (``/proc/stat`` minus this process and its children), so every
``freqdata bench`` command can say when its figures (and PASS/FAIL) are unreliable.

    meter = OtherLoad()
    ...  # the timed passes
    result["hardware"]["other_processes_cpu_fraction"] = meter.fraction()
    line = busy_line(result["hardware"]["other_processes_cpu_fraction"])
"""

from __future__ import annotations

import os
import time

#: Above this share of the machine used by other processes, a result is flagged unreliable.
BUSY_FRACTION = 0.10


def machine_busy_s() -> float | None:
    """CPU seconds all processes of the machine spent busy so far (all CPUs, ``/proc/stat``);
    ``None`` where that is not available."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Started at construction; :meth:`fraction` is the share (0..1) of all CPUs that other
    processes used since then, or ``None`` where ``/proc/stat`` is not available."""

    def __init__(self) -> None:
        self.machine0, self.own0, self.wall0 = machine_busy_s(), _own_cpu_s(), time.perf_counter()

    def fraction(self) -> float | None:
        machine, own, wall = machine_busy_s(), _own_cpu_s(), time.perf_counter()
        if machine is None or self.machine0 is None or wall <= self.wall0:
            return None
        others = max(0.0, (machine - self.machine0) - (own - self.own0))
        return round(others / ((wall - self.wall0) * (os.cpu_count() or 1)), 4)


def busy_line(fraction: float | None) -> str | None:
    """The line a bench command prints about other processes (``None`` if unknown): a
    warning above :data:`BUSY_FRACTION`, else the share."""
    if fraction is None:
        return None
    if fraction > BUSY_FRACTION:
        return (f"WARNING: other processes used {100 * fraction:.1f}% of the machine's CPU "
                "during the measurement: the figures and PASS/FAIL are unreliable, re-run on "
                "an idle machine")  # fmt: skip
    return f"other processes used {100 * fraction:.1f}% of the machine's CPU meanwhile"
