"""HTTP helpers the data tools share: write URLs, POSTs that turn failures into one error."""

from __future__ import annotations

import time

import requests

from filodb.errors import FiloError

RW_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "filodb-tools",
}


class SendError(FiloError):
    """A write the server refused (``status`` >= 300) or could not be sent (``status`` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        """True when the server refused the data itself (4xx), not when it failed (5xx, down)."""
        return 400 <= self.status < 500


def auth_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header that carries ``token`` (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def write_url(base: str, dataset: str, fmt: str) -> str:
    """The write route of ``dataset`` for ``remote-write`` or ``influx`` (ms precision)."""
    base = base.rstrip("/")
    if fmt == "influx":
        return f"{base}/influx/{dataset}/write?precision=ms"
    return f"{base}/promql/{dataset}/api/v1/write"


def _retry_after(value: str | None) -> float:
    """The seconds a ``Retry-After`` header asks to wait (1 when absent or a date), at most 30."""
    try:
        return min(30.0, max(0.1, float(value))) if value else 1.0
    except ValueError:
        return 1.0


def server_message(r: requests.Response) -> str:
    """The ``error`` of a Prometheus-shaped JSON error body, else the start of the text."""
    try:
        body = r.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    return r.text[:300] or r.reason


RETRY_STATUSES = (429, 503)  # the server asks to come back later: the log is full, a rate
RETRY_FOR_S = 300.0  # how long a body is offered again before the error stands


def post(session: requests.Session, url: str, body: bytes, headers: dict[str, str],
         timeout: float = 300, retry_for_s: float = RETRY_FOR_S) -> None:  # fmt: skip
    """POST ``body``; raises :class:`SendError` unless the answer is 2xx. A 429 or 503 is
    sent again after its ``Retry-After`` (1 s when absent, at most 30 s) for up to
    ``retry_for_s`` seconds, as Prometheus's remote write retries them."""
    deadline = time.monotonic() + retry_for_s
    while True:
        try:
            r = session.post(url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as e:
            raise SendError(f"cannot reach {url}: {e}") from e
        if r.status_code not in RETRY_STATUSES:
            break
        wait = _retry_after(r.headers.get("Retry-After"))
        if time.monotonic() + wait > deadline:
            break
        time.sleep(wait)
    if not 200 <= r.status_code < 300:
        raise SendError(f"{r.status_code} from {url}: {server_message(r)}", r.status_code)
