"""The ``scenimefy`` command run as users run it: a real subprocess."""

import os
import resource
import signal
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
    assert f"{len(inputs)} stylized, 0 skipped (already done), 0 failed" in result.stdout


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
    assert f"{len(files) - len(bad)} stylized, 0 skipped (already done), {len(bad)} failed" in result.stdout
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


# --------------------------------------------------------------------------- nothing lost, nothing half-written


def noisy_photos(folder, count: int, size=(256, 192)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        paths.append(folder / f"p{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(paths[-1])
    return paths


def every_file_decodes(folder) -> list:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        with Image.open(path) as image:
            image.load()  # raises on a half-written file
    return files


def test_sigterm_mid_folder_leaves_complete_files_and_the_rerun_finishes(tmp_path, tiny_weights):
    photos = noisy_photos(tmp_path / "in", 30)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "scenimefy", "stylize", tmp_path / "in", "-o", out]
    command += ["--weights", f"shinkai={tiny_weights}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if out.is_dir() and len([p for p in out.iterdir() if not p.name.startswith(".")]) >= 3:
            break
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM, stderr
    first = every_file_decodes(out)
    assert all(not p.name.startswith(".") for p in first)  # no partial file left behind
    assert 3 <= len(first) < len(photos), "the run ended before the signal: make the photos bigger"
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith(f"SIGTERM: {len(first)} stylized") and f"{len(photos) - len(first)} not done" in summary
    stamps = {p.name: p.stat().st_mtime_ns for p in first}

    rerun = run_cli(*command[3:])
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(photos) - len(first)} stylized, {len(first)} skipped (already done), 0 failed" in rerun.stdout
    final = every_file_decodes(out)
    assert [p.stem for p in final] == [p.stem for p in photos]
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in final if p.name in stamps)  # not redone


def test_full_disk_stops_with_one_line_and_no_partial_file(tmp_path, tiny_weights):
    noisy_photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "scenimefy", "stylize", str(tmp_path / "in"), "-o", str(out), "--weights", tiny_weights],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)),  # a "disk" of 20 kB
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file size limit" in errors[0] and "partial file was removed" in errors[0], (
        result.stderr
    )
    assert "0 stylized" in result.stdout and "3 not done" in result.stdout and "Traceback" not in result.stderr
    assert list(out.iterdir()) == []


def test_overwrite_redoes_and_datasets_are_inputs(tmp_path, tiny_weights, capsys):
    import datasets

    from scenimefy.cli import main

    photos = noisy_photos(tmp_path / "in", 3, size=(40, 32))
    rows = datasets.Dataset.from_dict({"caption": ["a", "b", "c"], "picture": [str(p) for p in photos]})
    rows.cast_column("picture", datasets.Image()).save_to_disk(str(tmp_path / "ds"))
    args = ["stylize", "--dataset", str(tmp_path / "ds"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)]
    assert main(args) == 0
    assert "3 stylized, 0 skipped" in capsys.readouterr().out
    assert [p.name for p in every_file_decodes(tmp_path / "out")] == ["00000.png", "00001.png", "00002.png"]
    assert main(args) == 0 and "0 stylized, 3 skipped" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0 and "3 stylized, 0 skipped" in capsys.readouterr().out
    assert main(["stylize", str(photos[0]), "-o", str(tmp_path / "x"), "--weights", f"ghibli={tiny_weights}"]) == 2
    assert "'ghibli' is not a style" in capsys.readouterr().err


@pytest.mark.slow
def test_stylize_shards_a_folder_across_two_accelerate_processes(tmp_path, tiny_weights):
    from tests.support.launch import accelerate_command

    photos = noisy_photos(tmp_path / "in", 10, size=(64, 48))
    noisy_photos(tmp_path / "in" / "nested", 2, size=(48, 40))
    out = tmp_path / "out"
    command, env = accelerate_command(
        "scenimefy", ["stylize", tmp_path / "in", "-o", out, "--weights", tiny_weights], 2
    )
    command.insert(command.index("scenimefy"), "-m")  # accelerate launch ... -m scenimefy stylize ...
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if "stylized," in line]
    assert len(summaries) == 1, result.stdout  # one summary, from the main process
    assert summaries[0].startswith("12 stylized, 0 skipped (already done), 0 failed (2 processes: ")
    shares = [int(n) for n in summaries[0].split("processes: ")[1].split(" written")[0].split(" + ")]
    assert len(shares) == 2 and all(n > 0 for n in shares) and sum(shares) == 12  # both did work
    files = every_file_decodes(out)
    assert len(files) == 12 and (out / "nested" / "p01.png") in files and (out / "p09.png") in files
    assert len(photos) == 10
