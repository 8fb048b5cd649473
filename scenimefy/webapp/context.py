"""What every tab of one app shares: the server's limits, the loaded pipelines, the styles'
availability (checked again now and then), and a count of the image / video jobs running (the
Live tab gives way to them)."""

from __future__ import annotations

import contextlib
import html
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scenimefy.hub import styles as registry
from scenimefy.hub.convert import CheckpointError
from scenimefy.hub.download import WeightsUnavailableError
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.webapp.live_size import LiveSides
from scenimefy.webapp.live_turns import LiveTurns
from scenimefy.webapp.messages import failure, user_error
from scenimefy.webapp.styles import StyleState, fast_style, selectable, style_states, unavailable_message

log = logging.getLogger("scenimefy.app")

_STATES_TTL_S = 30  # online, a check asks the Hub: not on every request


def on_zero_gpu() -> bool:
    """Whether this is a Hugging Face Space on ZeroGPU hardware (``SPACES_ZERO_GPU``, with ``spaces``)."""
    if os.environ.get("SPACES_ZERO_GPU", "").strip().lower() not in ("1", "true", "yes"):
        return False
    spec = importlib.util.find_spec("spaces")  # the package, not a folder named spaces/ (a namespace)
    return spec is not None and spec.origin not in (None, "namespace")


def on_gpu(fn: Callable, seconds: int) -> Callable:
    """``fn`` as a ZeroGPU task on ZeroGPU hardware, else ``fn`` itself.

    ZeroGPU attaches a GPU to a process only while a function decorated with ``spaces.GPU`` runs;
    outside one CUDA is not available, and the app would silently run on the Space's CPU.
    ``seconds``: the longest the task may hold the GPU (ZeroGPU's ``duration``).
    """
    if not on_zero_gpu():
        return fn
    import spaces  # only where it is installed: the Space's own runtime

    return spaces.GPU(duration=seconds)(fn)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this server (``python app.py --help`` names the flags)."""

    max_side: int = 1024  # image working resolution cap (longer side)
    video_max_side: int = 512  # video frames are scaled to this; every frame runs the network
    video_seconds: float = 10  # longest part of a clip one request may stylize
    live_max_side: int = 640  # Live tab, fast model: at most this (the size it runs at is measured)
    live_fps: float = 12  # ... the largest at which the model alone runs this fast here (0: live_max_side)
    live_full_side: int = 256  # Live tab without a fast model: the full model at this size
    live_seconds: float = 60  # one live turn; then the next waiting viewer gets the camera slot
    live_sessions: int = 1  # live streams served at once
    concurrency: int = 1  # image / video requests running at once (each tab its own group)


def load_pipeline(style: str, device: str) -> ScenimefyPipeline:
    """The pipeline of a registered style, full or lite (config.json names the class)."""
    source, subfolder = registry.resolve_style(style)
    return ScenimefyPipeline.from_pretrained(source, style=style, subfolder=subfolder, device=device)


class PipelineCache:
    """One pipeline per style (a fast variant is a style of its own), loaded on first use and
    shared by all requests."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._pipes: dict[str, ScenimefyPipeline] = {}
        self._lock = threading.Lock()

    def get(self, style: str) -> ScenimefyPipeline:
        with self._lock:
            if style not in self._pipes:
                self._pipes[style] = load_pipeline(style, self.device)
            return self._pipes[style]

    def preload(self, style: str) -> None:
        """Load ``style`` in the background so the first request does not wait for it."""

        def load() -> None:
            try:
                self.get(style)
                log.info("style %r loaded", style)
            except Exception as err:  # reported again, in words, when someone uses it
                log.warning("could not preload style %r: %s", style, err)

        threading.Thread(target=load, name=f"preload-{style}", daemon=True).start()


class AppContext:
    """Shared by the tabs of one app (one ``build_demo``)."""

    def __init__(self, device: str, limits: Limits, states: dict[str, StyleState] | None = None) -> None:
        self.limits = limits
        self.cache = PipelineCache(device)
        self._states = states if states is not None else style_states()
        self._checked = time.monotonic()
        self.video_speed: tuple[float, int] | None = None  # (s per frame, pixels per frame) of the last video job
        self.live_sides = LiveSides()  # the Live tab's working size per fast model, measured on first use
        self.live_turns = LiveTurns(limits.live_sessions, limits.live_seconds)  # who may stream now
        self.live_socket = not on_zero_gpu()  # the Live tab's own transport (ZeroGPU: Gradio's events only)
        self._jobs = 0
        self._jobs_lock = threading.Lock()

    def states(self) -> dict[str, StyleState]:
        """The styles' availability, checked again at most every 30 s (online it asks the Hub)."""
        if time.monotonic() - self._checked > _STATES_TTL_S:
            self._states, self._checked = style_states(), time.monotonic()
        return self._states

    def pipeline(self, style: str, what: str, *, fast: bool = False) -> tuple[ScenimefyPipeline, str]:
        """``(pipeline, the style that runs)`` for ``style`` (its fast variant with ``fast``), or a
        sentence saying why it cannot run (and a log line for the operator)."""
        now = self.states()
        if style not in selectable(now):
            raise user_error(f"There is no style called {html.escape(str(style))}. Choose one from the list.", "Style")
        if not now[style].runnable:
            raise user_error(unavailable_message(style, now), "Style not available")
        model = style
        if fast:
            model = fast_style(style, now)
            if model is None:
                raise user_error(
                    f"The {now[style].title} style has no fast model on this server. Untick Fast and try again.",
                    "No fast model",
                )
        try:
            return self.cache.get(model), model
        except (WeightsUnavailableError, CheckpointError) as err:
            log.error("style %r could not be loaded:\n%s", model, err)
            raise user_error(
                f"The {now[model].title} style could not be loaded on this server: its weights could not be "
                f"downloaded or read. Choose another style or try again later.",
                "Style not available",
            ) from None
        except Exception as err:
            raise failure(err, what, f"loading style {model!r}") from None

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Count an image or video job while it runs (the Live tab slows down meanwhile)."""
        with self._jobs_lock:
            self._jobs += 1
        try:
            yield
        finally:
            with self._jobs_lock:
                self._jobs -= 1

    @property
    def jobs_running(self) -> int:
        return self._jobs
