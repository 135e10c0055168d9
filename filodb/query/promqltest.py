"""Run Prometheus's PromQL test scripts (``../shared/promql-tests/*.test``) against the engine.

``python -m filodb.query.promqltest [FILES or DIRS]`` prints one line per file and a last line
``N passed, N failed, N skipped``. Native-histogram evals (``{{...}}`` in loaded or expected
data) are skipped and counted apart. Annotation expectations (``expect warn|info``) are not
checked yet: such an eval passes on its values alone. The Go harness's extra runs of each
instant eval (with ``@`` added, and as a range query) are not made.

The data and the engine come from a :class:`Backend`: :class:`MemoryBackend` (this module's
CLI) holds every series in a :class:`MemorySource` under the plain engine;
:mod:`filodb.testing.promql_sharded` loads through the real ingest path into several shards
under the distributed engine. :func:`main` takes the backend, so each mode's CLI is a line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from filodb.errors import FiloError
from filodb.model.labels import Labels
from filodb.query import ast
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.parser import parse, parse_duration
from filodb.query.result import Result
from filodb.query.values import STALE_NAN_BITS

STALE = np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]
_NUM = r"(?:[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|Inf|inf|NaN|nan))"
_EXPAND = re.compile(
    rf"^(?P<start>{_NUM})(?:(?P<delta>[-+](?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|inf)))?x(?P<n>\d+)$"
)
_EVAL = re.compile(
    r"^eval(?:_(?P<old>fail|warn|info|ordered))?\s+(?P<kind>instant|range)\s+(?P<rest>.*)$"
)
_INSTANT = re.compile(r"^at\s+(?P<t>\S+)\s+(?P<q>.*)$")
_RANGE = re.compile(r"^from\s+(?P<a>\S+)\s+to\s+(?P<b>\S+)\s+step\s+(?P<s>\S+)\s+(?P<q>.*)$")


def default_dir() -> Path:
    env = os.environ.get("FILODB_PROMQL_TESTS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "promql-tests"


@dataclass
class EvalOutcome:
    file: str
    line: int
    query: str
    status: str  # passed | failed | skipped
    reason: str = ""


@dataclass
class _Eval:
    line: int
    kind: str
    query: str
    t0: int
    t1: int
    step: int
    fail: bool = False
    fail_msg: str | None = None
    fail_regex: str | None = None
    ordered: bool = False
    string: str | None = None
    range_vector: tuple[int, int, int] | None = None
    expected: list[tuple[Labels | None, list[float | None]]] = field(default_factory=list)
    native: bool = False


def _number(tok: str) -> float:
    t = tok.lower()
    if t in ("inf", "+inf"):
        return math.inf
    if t == "-inf":
        return -math.inf
    if t in ("nan", "+nan", "-nan"):
        return math.nan
    if t.startswith(("0x", "-0x")):
        return float(int(t, 16))
    return float(tok)


def expand_points(tokens: list[str]) -> list[float | None]:
    """Point notation → values (None = no sample at that step)."""
    out: list[float | None] = []
    for tok in tokens:
        if tok == "_":
            out.append(None)
        elif tok.startswith("_x"):
            out.extend([None] * int(tok[2:]))
        elif tok == "stale":
            out.append(STALE)
        elif m := _EXPAND.match(tok):
            start = _number(m.group("start"))
            delta = _number(m.group("delta")) if m.group("delta") else 0.0
            out.extend(start + i * delta for i in range(int(m.group("n")) + 1))
        else:
            out.append(_number(tok))
    return out


def _split_series(line: str) -> tuple[str, str]:
    """``metric{labels} points`` → (selector, points); braces may contain spaces and quotes."""
    depth, quote = 0, None
    for i, c in enumerate(line):
        if quote:
            if c == "\\":
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return line[: i + 1], line[i + 1 :]
        elif c.isspace() and depth == 0:
            return line[:i], line[i:]
    return line, ""


def _labels(sel: str) -> Labels:
    if sel.replace(" ", "") == "{}":
        return ()
    e = parse(sel)
    assert isinstance(e, ast.VectorSelector)
    return tuple(sorted((m.name, m.value) for m in e.matchers if m.op == "=" and m.value != ""))


def _time(tok: str) -> int:
    return parse_duration(tok)


def _parse_file(text: str) -> Iterator[tuple[str, object]]:
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("load"):
            nhcb = line.startswith("load_with_nhcb")
            interval = _time(line.split()[1])
            series = []
            while i < len(lines) and lines[i][:1].isspace() and lines[i].strip():
                series.append((i + 1, lines[i].strip()))
                i += 1
            yield "load", (interval, series, nhcb)
        elif line == "clear":
            yield "clear", None
        elif m := _EVAL.match(line):
            ev = _eval_header(i, m)
            while (
                i < len(lines)
                and (lines[i][:1].isspace() or lines[i].startswith("expect"))
                and lines[i].strip()
            ):
                body = lines[i].strip()
                i += 1
                if body.startswith("expect"):
                    _expect(ev, body)
                elif not body.startswith("#"):
                    _expected_line(ev, body)
            yield "eval", ev
        else:
            yield "unknown", (i, line)


def _eval_header(lineno: int, m: re.Match[str]) -> _Eval:
    old, kind, rest = m.group("old"), m.group("kind"), m.group("rest")
    if kind == "instant":
        mi = _INSTANT.match(rest)
        assert mi, rest
        t = _time(mi.group("t"))
        ev = _Eval(lineno, kind, mi.group("q"), t, t, 0)
    else:
        mr = _RANGE.match(rest)
        assert mr, rest
        ev = _Eval(
            lineno,
            kind,
            mr.group("q"),
            _time(mr.group("a")),
            _time(mr.group("b")),
            _time(mr.group("s")),
        )
    ev.fail = old == "fail"
    ev.ordered = old == "ordered"
    return ev


def _expect(ev: _Eval, body: str) -> None:
    rest = body[len("expect") :].strip()
    if rest.startswith("fail"):
        ev.fail = True
        tail = rest[4:].strip()
        if tail.startswith("msg:"):
            ev.fail_msg = tail[4:].strip()
        elif tail.startswith("regex:"):
            ev.fail_regex = tail[6:].strip()
    elif rest.startswith("ordered"):
        ev.ordered = True
    elif rest.startswith("string"):
        ev.string = rest[6:].strip().strip('"').strip("`")
    elif rest.startswith("range vector"):
        m = re.match(r"range vector from (\S+) to (\S+) step (\S+)", rest)
        assert m, rest
        ev.range_vector = (_time(m.group(1)), _time(m.group(2)), _time(m.group(3)))


def _expected_line(ev: _Eval, body: str) -> None:
    if "{{" in body:
        ev.native = True
        return
    try:
        ev.expected.append((None, [_number(body)]))
        return
    except ValueError:
        pass
    sel, pts = _split_series(body)
    ev.expected.append((_labels(sel), expand_points(pts.split())))


class Evaluator(Protocol):
    """What answers a script's queries: the :class:`Engine`, or a server over HTTP."""

    def instant(self, query: str, t: int) -> Result: ...

    def range(self, query: str, start: int, end: int, step: int) -> Result: ...


class Backend(Protocol):
    """Where a script's data lives and what evaluates its queries."""

    def load(self, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> None:
        """Store one ``load`` block: ``(labels, ts, vals)`` per series, each label set once."""
        ...

    def engine(self) -> Evaluator:
        """An engine over everything loaded so far."""
        ...


class MemoryBackend:
    """Every series in one :class:`MemorySource`, under the plain :class:`Engine`."""

    def __init__(self) -> None:
        self.source = MemorySource()

    def load(self, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> None:
        for lb, ts, vs in series:
            self.source.add(lb, ts, vs)

    def engine(self) -> Engine:
        return Engine(self.source, timeout_s=100)


class _Runner:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.native_metrics: set[str] = set()
        self.nhcb_metrics: set[str] = set()  # native copies made by load_with_nhcb
        self.unloadable = 0

    def load(self, interval: int, series: list[tuple[int, str]], nhcb: bool = False) -> None:
        # A label set named twice in one block keeps its last line only, as Prometheus's
        # loader does (its series definitions are a map by label set).
        block: dict[Labels, tuple[Labels, np.ndarray, np.ndarray]] = {}
        for _, line in series:
            if nhcb:  # native-histogram copies of classic histograms are out of scope
                name = _split_series(line)[0].split("{")[0]
                for suffix in ("_bucket", "_count", "_sum"):
                    if name.endswith(suffix):
                        self.native_metrics.add(name[: -len(suffix)])
                        self.nhcb_metrics.add(name[: -len(suffix)])
            sel, pts = _split_series(line)
            if "{{" in pts:
                try:
                    self.native_metrics.add(dict(_labels(sel)).get("__name__", ""))
                except (FiloError, ValueError, AssertionError):
                    pass
                continue
            try:
                lb = _labels(sel)
                expand_points(pts.split())
            except (FiloError, ValueError, AssertionError):
                self.unloadable += 1  # syntax this runner does not know (e.g. start timestamps)
                continue
            if "{{" in pts:
                self.native_metrics.add(dict(lb).get("__name__", ""))
                continue
            vals = expand_points(pts.split())
            ts = np.array([i * interval for i, v in enumerate(vals) if v is not None], np.int64)
            vs = np.array([v for v in vals if v is not None], np.float64)
            block.pop(lb, None)
            if len(ts):
                block[lb] = (lb, ts, vs)
        self.backend.load(list(block.values()))

    def _reads_native(self, query: str) -> bool:
        """Whether a query names a native-histogram metric, or selects a load_with_nhcb copy by
        ``__name__`` regex (such evals depend on the copies existing)."""
        if any(n and re.search(rf"\b{re.escape(n)}(?![\w\\])", query) for n in self.native_metrics):
            return True
        try:
            tree = parse(query)
        except FiloError:
            return False
        for vs in _selectors(tree):
            name_ms = [m for m in vs.matchers if m.name == "__name__"]
            if name_ms and any(all(m.matches(n) for m in name_ms) for n in self.nhcb_metrics):
                return True
        return False

    def run(self, ev: _Eval) -> tuple[str, str]:
        if ev.native or self._reads_native(ev.query):
            return "skipped", "native histograms"
        if self.unloadable:
            return "failed", "the script loads data this runner cannot read"
        eng = self.backend.engine()
        try:
            res = (
                eng.instant(ev.query, ev.t0)
                if ev.kind == "instant"
                else eng.range(ev.query, ev.t0, ev.t1, ev.step)
            )
        except (FiloError, ValueError) as e:
            if not ev.fail:
                return "failed", f"unexpected error: {e}"
            if ev.fail_msg and ev.fail_msg not in str(e):
                return "failed", f"error {str(e)!r} lacks {ev.fail_msg!r}"
            if ev.fail_regex and not re.search(ev.fail_regex, str(e)):
                return "failed", f"error {str(e)!r} does not match {ev.fail_regex!r}"
            return "passed", ""
        except Exception as e:  # an engine bug: report, keep going
            return "failed", f"crash: {type(e).__name__}: {e}"
        if ev.fail:
            return "failed", "expected an error"
        return _compare(ev, res)


def _selectors(node: object) -> Iterator[ast.VectorSelector]:
    """Every vector selector in a tree."""
    if isinstance(node, ast.VectorSelector):
        yield node
    elif isinstance(node, tuple):
        for x in node:
            yield from _selectors(x)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _selectors(getattr(node, f.name))


def _eq(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b)) or abs(a - b) < 1e-12


def _compare(ev: _Eval, res) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    if ev.string is not None:
        ok = res.result_type == "string" and res.string[1] == ev.string
        return ("passed", "") if ok else ("failed", f"want string {ev.string!r}")
    if res.result_type == "scalar":
        want: Any = [v for lb, vals in ev.expected if lb is None for v in vals]
        if len(want) != 1 or not _eq(res.scalar[1], want[0]):
            return "failed", f"scalar {res.scalar[1]} != {want}"
        return "passed", ""
    got = [(lb, ts, vs) for lb, ts, vs in res.series]
    if ev.kind == "instant" and ev.range_vector is None and res.result_type == "vector":
        want = [(lb, vals[0]) for lb, vals in ev.expected if vals]
        if len(got) != len(want):
            return "failed", f"{len(got)} series, want {len(want)}"
        if ev.ordered:
            pairs = list(zip(got, want, strict=True))
        else:
            by = {lb: (lb, v) for lb, v in want}
            if len(by) != len(want) or any(g[0] not in by for g in got):
                return "failed", f"labels differ: got {[g[0] for g in got][:3]}"
            pairs = [(g, by[g[0]]) for g in got]
        for (glb, _, gv), (wlb, wv) in pairs:
            if glb != wlb or not _eq(float(gv[0]), float(wv)):
                return "failed", f"{dict(glb)}={gv[0]} want {dict(wlb)}={wv}"
        return "passed", ""
    # matrix: range query, or an instant query returning a range vector
    if ev.range_vector is not None:
        t0, _, step = ev.range_vector
    else:
        t0, step = ev.t0, ev.step
    want = {}
    for lb, vals in ev.expected:
        pts = [(t0 + i * step, v) for i, v in enumerate(vals) if v is not None]
        want[lb] = pts
    want = {k: v for k, v in want.items() if v}
    gotd = {lb: list(zip(ts.tolist(), vs.tolist(), strict=True)) for lb, ts, vs in got}
    if set(gotd) != set(want):
        return (
            "failed",
            f"series differ: got {sorted(map(str, gotd))[:2]} want {sorted(map(str, want))[:2]}",
        )
    for lb, pts in want.items():
        g = gotd[lb]
        if len(g) != len(pts) or any(
            a[0] != b[0] or not _eq(a[1], b[1]) for a, b in zip(g, pts, strict=True)
        ):
            return "failed", f"{dict(lb)}: got {g[:4]} want {pts[:4]}"
    return "passed", ""


def run_file(path: str | Path, backend: Callable[[], Backend] = MemoryBackend) -> list[EvalOutcome]:
    """Run one test script on fresh ``backend()``s (a new one at each ``clear``); one outcome
    per eval."""
    path = Path(path)
    runner = _Runner(backend())
    out = []
    try:
        commands = list(_parse_file(path.read_text()))
    except Exception as e:  # noqa: BLE001
        return [EvalOutcome(path.name, 0, "", "failed", f"cannot parse script: {e}")]
    for cmd, arg in commands:
        if cmd == "load":
            runner.load(*arg)  # type: ignore[misc]
        elif cmd == "clear":
            runner = _Runner(backend())
        elif cmd == "eval":
            ev = arg
            assert isinstance(ev, _Eval)
            try:
                status, reason = runner.run(ev)
            except Exception as e:  # noqa: BLE001 - a harness problem counts as a failure
                status, reason = "failed", f"harness: {type(e).__name__}: {e}"
            out.append(EvalOutcome(path.name, ev.line, ev.query, status, reason))
    return out


def _files(args: list[str]) -> list[Path]:
    paths = [Path(a) for a in args] or [default_dir()]
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.test")) if p.is_dir() else [p])
    return files


def main(argv: list[str] | None = None, backend: Callable[[], Backend] = MemoryBackend,
         description: str = __doc__.splitlines()[0]) -> int:  # fmt: skip
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any eval fails")
    a = ap.parse_args(argv)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for f in _files(a.paths):
        outcomes = run_file(f, backend)
        c = {k: sum(o.status == k for o in outcomes) for k in totals}
        for k in totals:
            totals[k] += c[k]
        print(f"{f.name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
        if a.verbose:
            for o in outcomes:
                if o.status == "failed":
                    print(f"  {o.file}:{o.line}: {o.query}\n      {o.reason}")
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if a.strict and totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
