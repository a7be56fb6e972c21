"""Polling for tests against a real API server, where every change lands asynchronously."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition",
               interval: float = 0.2) -> Any:
    """Call `predicate` until it returns something truthy and return that; TimeoutError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(interval)
