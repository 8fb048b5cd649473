"""The Hugging Face Space bundle stays in sync with the repository (versions, entry point, app)."""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import gradio
import pytest
import yaml

from tests.support.fixtures import tiny_translator
from tests.support.launch import free_port
from tests.support.paths import REPO

SPACE = REPO / "spaces"


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def front_matter() -> dict:
    text = (SPACE / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "spaces/README.md must start with a YAML front matter block"
    return yaml.safe_load(match.group(1))


def test_front_matter_matches_the_tested_gradio():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert str(meta["sdk_version"]) == gradio.__version__ == pins(REPO / "requirements.txt")["gradio"]
    assert (SPACE / meta["app_file"]).is_file()
    assert str(meta["python_version"]) == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["license"] == "other" and "non-commercial" in (SPACE / "README.md").read_text()


def test_requirements_pin_the_repositorys_versions():
    space, repo = pins(SPACE / "requirements.txt"), pins(REPO / "requirements.txt")
    assert "gradio" not in space and "gradio-client" not in space  # sdk_version installs gradio
    for name, version in space.items():
        assert repo.get(name) == version, (
            f"spaces/requirements.txt pins {name}=={version}, requirements.txt {repo.get(name)}"
        )


@pytest.mark.slow
def test_requirements_cover_what_the_app_imports():
    # The distributions the library side of the app (what scenimefy.webapp imports from the rest
    # of the package) loads, restricted to the repository's pins; gradio brings its own.
    sources = "\n".join(p.read_text() for p in (REPO / "scenimefy" / "webapp").glob("*.py"))
    imports = {m for m in re.findall(r"^from (scenimefy[\w.]*) import", sources, re.M) if ".webapp" not in m}
    assert imports
    code = (
        f"import importlib.metadata as md, sys; import {', '.join(sorted(set(imports)))};"
        "d = md.packages_distributions();"
        "print('\\n'.join(sorted({x for m in list(sys.modules) for x in d.get(m.split('.')[0], [])})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = {name.lower().replace("_", "-") for name in out.stdout.split()}
    needed = (loaded & set(pins(REPO / "requirements.txt"))) - {"gradio", "gradio-client", "torchvision"}
    missing = needed - set(pins(SPACE / "requirements.txt"))
    assert not missing, f"add to spaces/requirements.txt: {sorted(missing)}"


def test_sync_bundles_this_checkouts_app_and_package(tmp_path):
    out = tmp_path / "space"
    result = subprocess.run(
        [sys.executable, str(SPACE / "sync.py"), str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name in ("README.md", "requirements.txt", "app.py"):
        assert filecmp.cmp(SPACE / name, out / name, shallow=False)
    assert filecmp.cmp(REPO / "app.py", out / "scenimefy_app.py", shallow=False)  # the same build_demo
    package = sorted(p.relative_to(REPO) for p in (REPO / "scenimefy").rglob("*.py"))
    assert package and all(filecmp.cmp(REPO / p, out / p, shallow=False) for p in package)
    assert not list(out.rglob("__pycache__"))
    with pytest.raises(subprocess.CalledProcessError):  # never replaces a folder that is not a bundle
        subprocess.run([sys.executable, str(SPACE / "sync.py"), str(REPO / "spaces")], check=True, capture_output=True)


@pytest.mark.slow
def test_bundle_entry_point_serves_the_app(tmp_path):
    out = tmp_path / "space"
    subprocess.run([sys.executable, str(SPACE / "sync.py"), str(out)], check=True, capture_output=True, timeout=120)
    weights = tmp_path / "w"
    tiny_translator().save_pretrained(weights)
    port = free_port()
    env = {
        **os.environ,
        "SCENIMEFY_STYLE_SHINKAI": str(weights),
        "SCENIMEFY_CACHE": str(tmp_path / "c"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "PYTHONPATH": "",
    }
    # Run the bundle as the Space does: `python app.py` inside it, its own scenimefy package first.
    probe = subprocess.run(
        [sys.executable, "-c", "import app, scenimefy; m = app.load_webapp(); print(scenimefy.__file__, m.__file__)"],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [str(out / "scenimefy" / "__init__.py"), str(out / "scenimefy_app.py")]
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        config = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
                break
            except OSError:
                time.sleep(1)
        assert config is not None, (
            server.stdout.read().decode() if server.poll() is not None else "server did not start"
        )
        assert config["title"] == "Scenimefy"
        endpoints = {d.get("api_name") for d in config["dependencies"]}
        assert {"stylize", "stylize_video"} <= endpoints
    finally:
        server.terminate()
        server.wait(timeout=30)
