"""Query slots shared by web processes (``FileSlots``): a limit holds across threads and
processes, a released slot is free again, and a dead process's slots are freed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from filodb.web.query_limits import FileSlots, QuerySlots


class StepClock:
    """Each read is 10 ms later: a wait for a slot times out without real time passing."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.01
        return self.t


def test_file_slots_limit_holds_and_released_slots_are_free_again(tmp_path: Path) -> None:
    a, b = FileSlots(tmp_path, StepClock()), FileSlots(tmp_path, StepClock())  # two "processes"
    first, second = a.take("ds", 2, 0), b.take("ds", 2, 0)
    assert first is not None and second is not None
    assert a.take("ds", 2, 0.05) is None and b.take("ds", 2, 0) is None  # both slots held
    assert a.take("other", 2, 0) is not None  # another dataset has its own slots
    assert a.take("ds", 3, 0) is not None  # and another limit
    first()
    third = b.take("ds", 2, 0)
    assert third is not None and a.take("ds", 2, 0) is None
    second(), third()
    assert a.take("ds", 2, 0) is not None


def test_file_slots_of_a_killed_process_are_freed(tmp_path: Path) -> None:
    code = (
        "import sys; from filodb.web.query_limits import FileSlots; "
        f"assert FileSlots({str(tmp_path)!r}).take('../x', 1, 0); print('held', flush=True); "
        "sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        slots = FileSlots(tmp_path, StepClock())
        assert slots.take("../x", 1, 0.05) is None
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert slots.take("../x", 1, 0) is not None
        assert sorted(p.parent for p in tmp_path.rglob("*")) == [tmp_path]  # no path from a name
    finally:
        child.kill()
        child.wait(30)


def test_process_slots_time_out_and_release() -> None:
    slots = QuerySlots()
    release = slots.take("ds", 1, 0)
    assert release is not None and slots.take("ds", 1, 0.001) is None
    release()
    assert slots.take("ds", 1, 0) is not None
