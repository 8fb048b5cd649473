"""The web app on a real Gradio server, called through gradio_client."""

import socket

import numpy as np
import pytest
from PIL import Image

import app as webapp
from tests.fixtures import tiny_translator
from tests.paths import SAMPLES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = tmp_path_factory.mktemp("w")
    tiny_translator().save_pretrained(weights)
    mp = pytest.MonkeyPatch()
    mp.setenv("SCENIMEFY_STYLE_SHINKAI", str(weights))
    mp.setenv("SCENIMEFY_CACHE", str(tmp_path_factory.mktemp("sc")))
    demo = webapp.build_demo(max_side=128)
    port = free_port()
    demo.queue(default_concurrency_limit=1, max_size=8).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    mp.undo()


def test_stylize_through_the_server(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    src = SAMPLES / "teaser-0.jpg"
    out_path = client.predict(handle_file(str(src)), "shinkai", api_name="/stylize")
    out = Image.open(out_path)
    assert out.size == Image.open(src).size
    diff = np.abs(np.asarray(out.convert("RGB"), dtype=int) - np.asarray(Image.open(src).convert("RGB"), dtype=int))
    assert diff.mean() > 5  # a stylized image, not the input echoed back


def test_missing_weights_message_not_traceback(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(SAMPLES / "teaser-0.jpg")), "hosoda", api_name="/stylize")
    assert "no public weights" in str(err.value) and "Traceback" not in str(err.value)


def test_style_choices_show_availability(monkeypatch, tmp_path):
    monkeypatch.delenv("SCENIMEFY_STYLE_SHINKAI", raising=False)
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path))
    labels = dict((value, label) for label, value in webapp.style_choices())
    assert labels["hosoda"].endswith("(needs weights)")
