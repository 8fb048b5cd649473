"""The ``scenimefy`` command run as users run it: a real subprocess."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.models.translator import ScenimefyTranslator
from tests.support.fixtures import tiny_translator, write_awkward_images
from tests.support.paths import PARITY, SAMPLES


def run_cli(*args, env=None, timeout=300):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "scenimefy", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    tiny_translator().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_stylize_samples_folder(tmp_path):
    result = run_cli("stylize", SAMPLES, "-o", tmp_path / "out", "--weights", PARITY / "net_G.pth", "--max-side", "128")
    assert result.returncode == 0, result.stderr
    inputs = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.stem for p in outputs] == [p.stem for p in inputs]
    for src, out in zip(inputs, outputs):
        decoded = Image.open(out)
        decoded.load()
        assert decoded.size == Image.open(src).size
    assert f"{len(inputs)} stylized, 0 failed" in result.stdout


def test_bad_files_do_not_stop_the_batch(tmp_path, tiny_weights):
    files = write_awkward_images(tmp_path / "in")
    result = run_cli("stylize", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.returncode == 1
    bad = {"empty", "truncated", "text", "bomb"}
    for name in bad:
        assert f"FAILED {files[name]}" in result.stderr
    written = {p.stem for p in (tmp_path / "out").iterdir()}
    assert written == set(files) - bad
    assert Image.open(tmp_path / "out" / "palette.png").mode == "RGBA"
    assert Image.open(tmp_path / "out" / "rotated.png").size == (24, 48)
    assert "first frame" in result.stdout + result.stderr
    assert f"{len(files) - len(bad)} stylized, {len(bad)} failed" in result.stdout
    assert "Traceback" not in result.stderr


def test_single_bad_file_clear_error(tmp_path, tiny_weights):
    (tmp_path / "x.jpg").write_text("no")
    result = run_cli("stylize", tmp_path / "x.jpg", "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.returncode == 1 and "not an image" in result.stderr and "Traceback" not in result.stderr


def test_missing_style_offline_is_fast_and_actionable(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    start = time.monotonic()
    result = run_cli(
        "stylize",
        tmp_path / "a.png",
        "-o",
        tmp_path / "out",
        "--style",
        "hosoda",
        env={"HF_HUB_CACHE": str(tmp_path / "hf"), "SCENIMEFY_CACHE": str(tmp_path / "sc")},
    )
    assert result.returncode == 2
    assert "no public weights" in result.stderr and "SCENIMEFY_STYLE_HOSODA" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 15  # interpreter start-up included


def test_convert_then_load(tmp_path):
    result = run_cli("convert", PARITY / "net_G.pth", tmp_path / "shinkai")
    assert result.returncode == 0, result.stderr
    assert "ngf=64, n_blocks=9" in result.stdout
    model = ScenimefyTranslator.from_pretrained(tmp_path / "shinkai")
    vec = np.load(PARITY / "translator.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(vec["input"]))
    np.testing.assert_allclose(out.numpy(), vec["output"], atol=1e-4)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_convert_refuses_malicious_pickle(tmp_path):
    target = tmp_path / "pwned"
    torch.save({"model.1.weight": _Exploit(target)}, tmp_path / "evil.pth")
    result = run_cli("convert", tmp_path / "evil.pth", tmp_path / "out")
    assert result.returncode == 2 and "refused" in result.stderr
    assert not target.exists() and not (tmp_path / "out").exists()
    # The same file through stylize --weights.
    (tmp_path / "a.png").write_bytes(b"")
    result = run_cli("stylize", tmp_path / "a.png", "-o", tmp_path / "o", "--weights", tmp_path / "evil.pth")
    assert result.returncode == 2 and not target.exists()


def test_styles_lists_status(tmp_path):
    result = run_cli("styles", env={"HF_HUB_CACHE": str(tmp_path / "hf"), "SCENIMEFY_CACHE": str(tmp_path / "sc")})
    assert result.returncode == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "needs weights" in lines["hosoda"] and "needs weights" in lines["shinkai"]


def test_convert_stylegan2_with_pickled_args(tmp_path):
    import argparse

    parity = torch.load(PARITY / "stylegan2.pt", weights_only=True)
    # The authors' lhq-220000.pt layout: state dicts plus their pickled argparse Namespace.
    torch.save({**parity, "args": argparse.Namespace(size=64, latent=128, n_mlp=4)}, tmp_path / "lhq.pt")
    result = run_cli("convert", tmp_path / "lhq.pt", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    from scenimefy.models.stylegan2 import StyleGAN2Generator

    generator = StyleGAN2Generator.from_pretrained(tmp_path / "out" / "generator")
    assert generator.config.size == 64 and generator.config.style_dim == 128
    assert (tmp_path / "out" / "discriminator" / "config.json").is_file()
