"""Prometheus's PromQL scripts over HTTP against a real ``filodb up``: data in by remote write,
answers out of ``/api/v1/query`` and ``query_range`` as JSON. Every eval pinned in memory
mode for the chosen files must pass here too; the pins come from ``promql_passing.txt``.

The files are chosen for many evals over few ``clear`` commands (each stretch between them is a new
dataset, whose shards take the coordinator a second or two to assign), and between them they
cover the answer shapes
(scalar, string, vector, matrix, errors), aggregations reduced across shards, ``@``,
staleness markers, subqueries, UTF-8 and ``__type__``/``__unit__`` labels, and values at the
ends of the float range.
"""

from __future__ import annotations

import pytest

from filodb.query.promqltest import default_dir, run_file
from filodb.testing.cluster import UpProcess
from filodb.testing.promql_http import HttpServer
from tests.query.test_promql_conformance import pinned

pytestmark = pytest.mark.e2e

FILES = ["literals.test", "aggregators.test", "at_modifier.test", "duration_expression.test",
         "type_and_unit.test", "name_label_dropping.test", "staleness.test", "trig_functions.test",
         "subquery.test"]  # fmt: skip


def test_pinned_evals_pass_over_http(up: UpProcess) -> None:
    pins = pinned("memory")
    server = HttpServer(up.url, shards=2, spread=1)
    checked, regressed = 0, []
    for name in FILES:
        outcomes = {o.line: o for o in run_file(default_dir() / name, server)}
        for n in sorted(pins.get(name, set())):
            checked += 1
            o = outcomes.get(n)
            if o is None or o.status != "passed":
                regressed.append(
                    f"{name}:{n}: {o.query if o else '?'} -> {o.reason if o else 'not run'}"
                )
    server.close()
    assert checked >= 450, f"only {checked} pinned evals in {FILES}"
    assert not regressed, "\n".join(regressed)
