"""The torchvision fix (scenimefy/_torchvision.py) and its start-up hook, in fresh interpreters."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from scenimefy._torchvision import HOOK_FILE

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)


def test_import_scenimefy_makes_torchvision_importers_work():
    result = run(
        "import scenimefy, torchvision, lpips, open_clip; "
        "from transformers import Mask2FormerImageProcessor; print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_startup_hook_is_installed_and_lazy():
    hook = Path(sysconfig.get_paths()["purelib"]) / HOOK_FILE
    assert hook.is_file(), f"{hook} missing: `make install` writes it (see scenimefy/_torchvision.py)"
    # torchvision first, before any project import: what `accelerate launch` does via timm.
    result = run("import sys; assert 'torch' not in sys.modules; import torchvision; print(torchvision.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0.28")


def test_accelerate_cli_starts():
    accelerate = Path(sys.executable).with_name("accelerate")
    result = subprocess.run([str(accelerate), "env"], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Accelerate" in result.stdout
