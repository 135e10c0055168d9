"""Alerts to Alertmanager's v2 API (``POST <url>/api/v2/alerts``), off the evaluation loop.

Each alert goes as Prometheus sends it: labels (the external labels added where the alert has
no such label), annotations, ``startsAt`` (when it fired), ``endsAt`` (when it resolved, or
``4 × max(resend delay, group interval)`` ahead while firing, so Alertmanager resolves it by
itself if this process stops sending) and ``generatorURL``. A bounded queue
(``MAX_QUEUE`` alerts; the oldest are dropped when full) feeds one sender thread; a failed
POST to one Alertmanager is logged and counted, the others still get the batch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_plus

import requests

from filodb.model.labels import Labels
from filodb.rules.alerting import RESEND_DELAY_MS, Alert
from filodb.rules.state import rfc3339

log = logging.getLogger(__name__)
MAX_QUEUE = 10_000
MAX_BATCH = 64


def am_alert(a: Alert, expr: str, interval_ms: int, t: int, external_labels: Labels = (),
             external_url: str = "") -> dict[str, Any]:  # fmt: skip
    labels = {**dict(external_labels), **dict(a.labels)}
    ends = a.resolved_at or t + 4 * max(RESEND_DELAY_MS, interval_ms)
    return {"labels": labels, "annotations": dict(a.annotations),
            "startsAt": rfc3339(a.fired_at or a.active_at), "endsAt": rfc3339(ends),
            "generatorURL": f"{external_url}/graph?g0.expr={quote_plus(expr)}&g0.tab=1"}  # fmt: skip


class Notifier:
    """Sends alert batches to every configured Alertmanager from a background thread."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 10.0) -> None:
        self.urls = [u.rstrip("/") for u in urls if u]
        self.timeout_s = timeout_s
        self._q: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUE)
        self._cv = threading.Condition()
        self._stop = False
        self.sent: dict[str, int] = dict.fromkeys(self.urls, 0)  # alerts, per Alertmanager
        self.errors: dict[str, int] = dict.fromkeys(self.urls, 0)  # alerts that failed to go
        self.dropped = 0  # alerts no Alertmanager took (all failed, or the queue overflowed)
        self._thread: threading.Thread | None = None
        if self.urls:
            self._thread = threading.Thread(target=self._run, name="alert-notifier", daemon=True)
            self._thread.start()

    def send(self, alerts: list[dict[str, Any]]) -> None:
        if not self.urls or not alerts:
            return
        with self._cv:
            self.dropped += max(0, len(self._q) + len(alerts) - MAX_QUEUE)
            self._q.extend(alerts)
            self._cv.notify()

    def queue_length(self) -> int:
        return len(self._q)

    def _run(self) -> None:
        session = requests.Session()
        while True:
            with self._cv:
                while not self._q and not self._stop:
                    self._cv.wait()
                if self._stop and not self._q:
                    return
                batch = [self._q.popleft() for _ in range(min(MAX_BATCH, len(self._q)))]
            ok = False
            for url in self.urls:
                try:
                    resp = session.post(f"{url}/api/v2/alerts", json=batch, timeout=self.timeout_s)
                    resp.raise_for_status()
                    self.sent[url] += len(batch)
                    ok = True
                except requests.RequestException as e:
                    self.errors[url] += len(batch)
                    log.warning("sending %d alerts to %s: %s", len(batch), url, e)
            if not ok:
                self.dropped += len(batch)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread:
            self._thread.join(timeout=self.timeout_s)
