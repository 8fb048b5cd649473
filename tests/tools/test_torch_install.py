"""tools/torch_install.py: the torch build the install picks on each kind of machine, through the script's
own command line (facts given with --os/--gpu/--find-links, or detected from a stand-in nvidia-smi on PATH
and pip's find-links), and its check that a CPU choice pulled no CUDA packages."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / "tools" / "torch_install.py"
TORCH = "2.13.0"  # requirements.txt's pins, which the script reads
VISION = "0.28.0"
PY = f"cp{sys.version_info.major}{sys.version_info.minor}"  # the Python the script runs on


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "SCENIMEFY_TORCH"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=120
    )


def decision(*args: str, env: dict | None = None) -> tuple[str, str]:
    """(the 'torch: <build> build: <why>' line, the pip command line) of a dry run."""
    result = run("install", "--dry-run", *args, env=env)
    assert result.returncode == 0, result.stderr
    first, pip = result.stdout.splitlines()[:2]
    return first, pip


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A find-links folder holding the pinned CPU wheel (its name is all the decision reads)."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / f"torch-{TORCH}+cpu-{PY}-{PY}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    return folder


def test_local_cpu_wheel_wins_and_installs_the_pins_unchanged(wheels):
    for gpu in ("yes", "no"):
        first, pip = decision("--os", "linux", "--gpu", gpu, "--find-links", f"https://example.org/simple {wheels}")
        assert first.startswith("torch: local build:") and f"torch-{TORCH}+cpu" in first
        assert pip.endswith(f"install -q torch=={TORCH} torchvision=={VISION}")
    # as a file:// URL too
    assert "local build" in decision("--os", "linux", "--gpu", "no", "--find-links", wheels.as_uri())[0]


def test_linux_without_gpu_or_local_wheel_takes_the_cpu_index():
    first, pip = decision("--os", "linux", "--gpu", "no", "--find-links", "")
    assert first.startswith("torch: cpu build: linux, no NVIDIA GPU")
    index = "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert pip.endswith(f"install -q {index} torch=={TORCH}+cpu torchvision=={VISION}+cpu")


def test_a_wheel_of_another_version_or_python_is_not_the_local_build(tmp_path):
    (tmp_path / f"torch-2.12.0+cpu-{PY}-{PY}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / f"torch-{TORCH}-{PY}-{PY}-manylinux_2_28_x86_64.whl").write_bytes(b"")  # a CUDA build
    (tmp_path / f"torch-{TORCH}+cpu-cp27-cp27mu-manylinux1_x86_64.whl").write_bytes(b"")  # another Python
    assert "cpu build" in decision("--os", "linux", "--gpu", "no", "--find-links", str(tmp_path))[0]


def test_linux_with_gpu_takes_pypis_cuda_build():
    first, pip = decision("--os", "linux", "--gpu", "yes", "--find-links", "")
    assert first.startswith("torch: cuda build: nvidia-smi lists")
    assert pip.endswith(f"install -q torch=={TORCH} torchvision=={VISION}")


def test_macos_takes_the_default_wheel_gpu_or_not():
    for gpu in ("yes", "no"):
        first, pip = decision("--os", "darwin", "--gpu", gpu, "--find-links", "")
        assert first.startswith("torch: default build: macOS")
        assert pip.endswith(f"install -q torch=={TORCH} torchvision=={VISION}")


def fake_nvidia_smi(folder: Path, output: str, code: int) -> dict:
    folder.mkdir()
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script nvidia-smi")
def test_the_gpu_is_detected_with_nvidia_smi(tmp_path):
    env = fake_nvidia_smi(tmp_path / "ok", "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)", 0)
    first, _ = decision("--os", "linux", "--find-links", "", env=env)
    gpu = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)"
    assert first == f"torch: cuda build: nvidia-smi lists {gpu}: PyPI's CUDA build"
    # installed tools but no working driver: nvidia-smi fails, so no GPU
    env = fake_nvidia_smi(tmp_path / "broken", "NVIDIA-SMI has failed because it could not communicate", 9)
    assert "cpu build" in decision("--os", "linux", "--find-links", "", env=env)[0]


def test_pips_find_links_are_read_from_its_environment_and_config(wheels, tmp_path):
    no_config = {"PIP_CONFIG_FILE": os.devnull}
    env = {**no_config, "PIP_FIND_LINKS": f"/nonexistent {wheels}"}
    assert "local build" in decision("--os", "linux", "--gpu", "no", env=env)[0]
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {wheels}\n")
    env = {"PIP_CONFIG_FILE": str(config), "PIP_FIND_LINKS": ""}
    assert "local build" in decision("--os", "linux", "--gpu", "no", env=env)[0]
    env = {**no_config, "PIP_FIND_LINKS": ""}
    assert "cpu build" in decision("--os", "linux", "--gpu", "no", env=env)[0]


def test_the_choice_can_be_forced_and_a_wrong_value_is_one_line():
    env = {"SCENIMEFY_TORCH": "cpu"}
    assert decision("--os", "darwin", "--gpu", "yes", env=env)[0] == "torch: cpu build: SCENIMEFY_TORCH=cpu"
    result = run("install", "--dry-run", env={"SCENIMEFY_TORCH": "rocm"})
    assert result.returncode != 0
    assert "SCENIMEFY_TORCH='rocm': expected one of local, cpu, cuda, default" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_fails_a_cpu_choice_that_pulled_cuda_packages_and_allows_them_elsewhere(tmp_path):
    record = tmp_path / "choice.txt"
    record.write_text("cpu\n")
    result = run("verify", "--record", str(record))
    assert result.returncode == 0 and "torch: cpu build, no CUDA packages" in result.stdout
    # a CUDA package in the environment: its metadata on the path is what pip list reads
    site = tmp_path / "site"
    (site / "nvidia_cublas-13.0.0.dist-info").mkdir(parents=True)
    (site / "nvidia_cublas-13.0.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nvidia-cublas\nVersion: 13.0.0\n"
    )
    with_cuda = {"PYTHONPATH": str(site)}
    result = run("verify", "--record", str(record), env=with_cuda)
    assert result.returncode == 1
    assert "CUDA packages were installed on a CPU choice (cpu): nvidia-cublas; check the torch pin" in result.stderr
    record.write_text("cuda\n")
    result = run("verify", "--record", str(record), env=with_cuda)
    assert result.returncode == 0 and "torch: cuda build: CUDA packages allowed" in result.stdout
