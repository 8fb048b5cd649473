"""ZeroGPU: the web app's jobs become ``spaces.GPU`` tasks on ZeroGPU hardware, and stay plain
functions everywhere else. ZeroGPU itself exists only on Hugging Face's hardware, so the decorated
case uses a stand-in ``spaces`` package that records what the app asked of it."""

import importlib
import sys

import pytest

from scenimefy.webapp import context

STAND_IN = """
calls = []


def GPU(duration=None):
    def decorate(fn):
        def task(*args, **kwargs):
            calls.append((fn.__name__, duration))
            return fn(*args, **kwargs)

        task.__wrapped__ = fn
        return task

    return decorate
"""


def job(x, y=1):
    return x + y


def test_elsewhere_the_job_is_the_function_itself(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not context.on_zero_gpu()
    assert context.on_gpu(job, seconds=60) is job


def test_without_the_spaces_package_zero_gpu_is_off_even_with_the_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    (tmp_path / "spaces").mkdir()  # a folder named spaces/ (like the repository's) is no package
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.util.find_spec("spaces") is not None
    assert not context.on_zero_gpu()
    assert context.on_gpu(job, seconds=60) is job


@pytest.fixture
def stand_in_spaces(monkeypatch, tmp_path):
    package = tmp_path / "site" / "spaces"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    yield
    sys.modules.pop("spaces", None)


def test_on_zero_gpu_the_job_runs_as_a_spaces_gpu_task(monkeypatch, stand_in_spaces):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert context.on_zero_gpu()
    task = context.on_gpu(job, seconds=120)
    assert task is not job and task(2, y=3) == 5
    import spaces

    assert spaces.calls == [("job", 120)]
    monkeypatch.setenv("SPACES_ZERO_GPU", "0")
    assert context.on_gpu(job, seconds=120) is job


def test_the_space_entry_point_sees_zero_gpu_the_same_way(monkeypatch, stand_in_spaces):
    from tests.support.paths import REPO

    spec = importlib.util.spec_from_file_location("space_entry", REPO / "spaces" / "app.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert entry.zero_gpu() and "cuda" in entry.space_args(True)
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert not entry.zero_gpu()
