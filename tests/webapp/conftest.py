"""Fixtures shared by the browser tests (each module launches its own Chromium as ``browser``)."""

import pytest


@pytest.fixture
def page(browser):
    """A fresh page at a desktop size in the module's browser."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    yield context.new_page()
    context.close()
