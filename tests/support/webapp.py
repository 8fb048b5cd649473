"""Serving the real web app (``app.py``) on a local port for tests: in this process, or as its own
process (``python app.py``) whose log, memory and CPU time a test can watch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import app as webapp
from tests.support.fixtures import tiny_translator
from tests.support.launch import free_port
from tests.support.paths import REPO


def serve(demo, **kwargs) -> str:
    """Launch ``demo`` on a free loopback port without blocking; returns its URL."""
    port = free_port()
    webapp.launch(demo, host="127.0.0.1", port=port, block=False, quiet=True, **kwargs)
    return f"http://127.0.0.1:{port}/"


def page_config(url: str) -> dict:
    with urllib.request.urlopen(url + "config", timeout=30) as response:
        return json.load(response)


def tiny_shinkai_env(tmp_path_factory) -> pytest.MonkeyPatch:
    """Point the shinkai style at tiny random weights and the cache at a temp folder; undo() after."""
    weights = tmp_path_factory.mktemp("w")
    tiny_translator().save_pretrained(weights)
    mp = pytest.MonkeyPatch()
    mp.setenv("SCENIMEFY_STYLE_SHINKAI", str(weights))
    mp.setenv("SCENIMEFY_CACHE", str(tmp_path_factory.mktemp("sc")))
    return mp


class AppProcess:
    """``python app.py ARGS`` on a free port, its log in a file, its temp folder under ``folder``."""

    def __init__(self, folder: Path, args: list[str], timeout: float = 180) -> None:
        self.folder = folder
        self.tmp = folder / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "server.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        env = {
            **os.environ,
            "TMPDIR": str(self.tmp),  # the app's scratch folder (and Gradio's uploads) live here
            "GRADIO_TEMP_DIR": str(self.tmp / "gradio"),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONPATH": str(REPO),
        }
        self._log = open(self.log_path, "w")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--port", str(port), *args],
            cwd=folder,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the server log after {timeout} s:\n{self.log()[-3000:]}")

    def rss_mb(self) -> float:
        """Resident memory of the server process (MB)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
