"""One helper for tests that must prove a call does not hang."""

from __future__ import annotations

import threading


def finishes_within(fn, seconds: float) -> BaseException | None:
    """Run ``fn`` in a daemon thread; it must end within ``seconds``. Returns the exception it raised (or None)."""
    box: dict[str, BaseException] = {}

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: it hangs (or reads without bound)"
    return box.get("error")
