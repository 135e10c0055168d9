"""Waiting helpers shared by the end-to-end tests, the test harnesses and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float, interval: float = 0.2,
               retry_on: tuple[type[BaseException], ...] = (AssertionError,)) -> T:  # fmt: skip
    """``fn()``'s result once it stops raising ``retry_on``; its last error after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except retry_on:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def wait_healthy(url: str, wait_s: float, what: str, log_tail: Callable[[], str],
                 check_alive: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Poll ``url + /admin/health`` until it answers 200; ``check_alive`` may raise to give up
    early (a process that exited). Raises TimeoutError with the last answer and the log tail."""
    deadline = time.monotonic() + wait_s
    last = ""
    while time.monotonic() < deadline:
        if check_alive is not None:
            check_alive()
        try:
            r = requests.get(url + "/admin/health", timeout=2)
            last = r.text
            if r.status_code == 200:
                return
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.2)
    raise TimeoutError(f"{what} not healthy after {wait_s}s: {last}\n{log_tail()}")


def wait_for(pred: Callable[[], T], timeout: float, what: str,
             log_tail: Callable[[], str] | None = None, interval: float = 0.2,
             retry_on: tuple[type[BaseException], ...] = (requests.RequestException,)) -> T:  # fmt: skip
    """``pred()``'s first truthy result; an error in ``retry_on`` counts as not yet. Raises
    AssertionError naming ``what``, the last result and the log tail (when given) after
    ``timeout`` s. ``pred`` may do work each call (consume a stream) and say when it is done."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except retry_on as e:
            last = e
        time.sleep(interval)
    tail = f"\n{log_tail()}" if log_tail is not None else ""
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last}){tail}")
