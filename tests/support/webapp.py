"""Serving the real web app (``app.py``) on a local port for tests."""

from __future__ import annotations

import json
import urllib.request

import pytest

import app as webapp
from tests.support.fixtures import tiny_translator
from tests.support.launch import free_port


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
