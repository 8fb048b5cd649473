"""Who may stream to the Live tab now, whatever carries the stream (the page's socket or Gradio's
stream): ``Limits.live_sessions`` streams at once, in turns of at most ``Limits.live_seconds``
while someone else waits; a stream that sends no frame for ``LEASE_S`` has left (Gradio's stream
tells the server nothing when its tab closes)."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("scenimefy.app")

LEASE_S = 5.0  # a stream with no frame for this long has left (its slot or place goes to others)


class LiveTurns:
    """The live slots and the line for them: ``admit(key)`` on every frame of a stream, ``leave(key)``
    when it ends. A turn that has lasted ``seconds`` while others wait ends: the stream goes to the
    back of the line, and the first in line gets the slot."""

    def __init__(self, slots: int, seconds: float) -> None:
        self.slots, self.seconds = slots, seconds
        self._running: dict[object, list[float]] = {}  # key -> [its turn began, its last frame]
        self._waiting: dict[object, float] = {}  # key -> its last frame, first come first
        self._lock = threading.Lock()

    def admit(self, key: object, now: float | None = None) -> int:
        """0 when the stream ``key`` may run a frame now, else its place in the line (1: next)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._drop_absent(key, now)
            if key in self._running:
                began = self._running[key][0]
                if not self._waiting or now - began < self.seconds:
                    self._running[key][1] = now
                    return 0
                del self._running[key]
                log.info("live: a turn ended after %.0f s; the next viewer in line gets the live view", now - began)
            self._waiting[key] = now  # a known key keeps its place in the line
            while self._waiting and len(self._running) < self.slots:
                first = next(iter(self._waiting))
                del self._waiting[first]
                self._running[first] = [now, now]
            return 0 if key in self._running else list(self._waiting).index(key) + 1

    def leave(self, key: object) -> None:
        with self._lock:
            self._running.pop(key, None)
            self._waiting.pop(key, None)

    def _drop_absent(self, caller: object, now: float) -> None:
        for key in [k for k, (_, seen) in self._running.items() if k is not caller and now - seen > LEASE_S]:
            del self._running[key]
        for key in [k for k, seen in self._waiting.items() if k is not caller and now - seen > LEASE_S]:
            del self._waiting[key]
