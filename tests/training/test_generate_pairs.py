"""train/generate_pairs.py end to end with tiny StyleGAN2 generators and a tiny Mask2Former."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from scenimefy.models.segmenter import SemanticSegmenter
from scenimefy.models.stylegan2 import StyleGAN2Generator
from tests.support.launch import accelerate_launch
from tests.support.paths import REPO
from tests.support.scripts import load_pairs, load_script, run_in_process
from tests.support.tiny_mask2former import tiny_mask2former

SCRIPT = REPO / "train" / "generate_pairs.py"


@pytest.fixture(scope="module")
def script():
    return load_script("generate_pairs")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("source", 0), ("target", 1)):
        torch.manual_seed(seed)
        StyleGAN2Generator(size=32, style_dim=16, n_mlp=2, channel_max=16).save_pretrained(root / name)
    tiny_mask2former().save_pretrained(root / "m2f")
    return root


def args(models, out, **overrides):
    settings = {
        "source": models / "source",
        "target": models / "target",
        "segmenter": models / "m2f",
        "output_dir": out,
        "num_pairs": 5,
        "block_size": 3,
        "batch_size": 2,
        "mean_latent_samples": 64,
        "max_lbce": 10.0,  # a random Mask2Former scores ~ln(150) > 5: accept everything by default
        "min_classes": 0,
        "seed": 1,
    }
    settings.update(overrides)
    return [f"--{k}={v}" for k, v in settings.items()]


def seeds_for(base, indices):
    return [base * 2**32 + i for i in indices]


@pytest.fixture(scope="module")
def first_run(script, models, tmp_path_factory):
    """Every candidate accepted: candidates 0..5 with their L_BCE, in order."""
    out = tmp_path_factory.mktemp("pairs") / "all"
    assert run_in_process(script, args(models, out, num_pairs=6)) == 0
    return out


def test_pairs_written_with_correct_metadata(first_run, models, tmp_path):
    ds = load_pairs(first_run, tmp_path)
    assert ds.num_rows == 6 and ds.column_names == ["real", "anime", "seed", "lbce", "classes"]
    assert list(ds["seed"]) == seeds_for(1, range(6))
    row = ds[0]
    assert row["real"].size == (32, 32) and row["anime"].size == (32, 32)

    # The seed reproduces the pair, and lbce / classes are the selection's values for those images.
    source = StyleGAN2Generator.from_pretrained(models / "source")
    target = StyleGAN2Generator.from_pretrained(models / "target")
    with torch.no_grad():
        mean_w = source.mean_latent(64, generator=torch.Generator().manual_seed(1))
        z = torch.randn(16, generator=torch.Generator().manual_seed(row["seed"]))[None]
        w = StyleGAN2Generator.truncate(source.mapping(z), mean_w, 0.7)
        expected_real = ((source(w).clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8)[0]
        expected_anime = ((target(w).clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8)[0]
    real = torch.from_numpy(np.array(row["real"])).permute(2, 0, 1)
    anime = torch.from_numpy(np.array(row["anime"])).permute(2, 0, 1)
    assert (real.int() - expected_real.int()).abs().max() <= 1  # batch-size rounding at most one level
    assert (anime.int() - expected_anime.int()).abs().max() <= 1
    lbce, classes = SemanticSegmenter.from_pretrained(models / "m2f").score_pairs(anime[None], real[None])
    assert row["lbce"] == pytest.approx(lbce.item(), abs=1e-4)
    assert row["classes"] == classes.item()

    card = (first_run / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 6
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert "candidates examined: 6, kept: 6" in card
    assert not list(first_run.rglob(".tmp-*"))


def test_more_pairs_resume_the_run_and_keep_the_first_ones(script, models, tmp_path):
    out = tmp_path / "pairs"
    assert run_in_process(script, args(models, out, num_pairs=4)) == 0  # blocks 0, 1; block 1 cut to 1 pair
    first = load_pairs(out, tmp_path)
    assert list(first["seed"]) == seeds_for(1, range(4))
    # More pairs, another batch size: the cut shard is redone, block 2 added; nothing duplicated.
    assert run_in_process(script, args(models, out, num_pairs=7, batch_size=3)) == 0
    second = load_pairs(out, tmp_path / "again")
    assert list(second["seed"]) == seeds_for(1, range(7))
    assert [r["lbce"] for r in second][:4] == pytest.approx([r["lbce"] for r in first], abs=1e-5)


def test_changed_settings_refuse_to_resume(script, models, first_run):
    from scenimefy.training.config import ConfigError

    with pytest.raises(ConfigError, match="truncation"):
        run_in_process(script, args(models, first_run, num_pairs=6, truncation=0.5))


def test_threshold_rejects_and_running_out_of_candidates_is_reported(script, models, first_run, tmp_path, capsys):
    lbce = [row["lbce"] for row in load_pairs(first_run, tmp_path)]  # candidates 0..5
    ordered = sorted(lbce)
    threshold = (ordered[2] + ordered[3]) / 2
    passing = [i for i, value in enumerate(lbce) if value < threshold]
    assert len(passing) == 3
    out = tmp_path / "strict"
    status = run_in_process(script, args(models, out, num_pairs=4, max_lbce=threshold, max_candidates=6))
    assert status == 1 and "only 3 of 4 pairs" in capsys.readouterr().err
    ds = load_pairs(out, tmp_path)
    assert list(ds["seed"]) == seeds_for(1, passing)
    assert max(ds["lbce"]) < threshold


def subprocess_env():
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_killed_run_restarts_to_exactly_n_unique_pairs(models, tmp_path):
    out = tmp_path / "pairs"
    cmd = [sys.executable, str(SCRIPT), *args(models, out, num_pairs=8, block_size=1, batch_size=1)]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / ".progress").glob("block-*.json")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((out / ".progress").glob("block-*.json")))
    assert 1 <= finished < 8, "killed mid-run"
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ds = load_pairs(out, tmp_path)
    assert list(ds["seed"]) == seeds_for(1, range(8))  # exactly N, unique, in candidate order


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(models, first_run, tmp_path):
    out = tmp_path / "pairs"
    done = accelerate_launch(SCRIPT, args(models, out, num_pairs=6), num_processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with 2 process(es)" in done.stdout
    ds = load_pairs(out, tmp_path)
    reference = load_pairs(first_run, tmp_path / "ref")
    assert list(ds["seed"]) == list(reference["seed"])  # same pairs as one process
    assert list(ds["lbce"]) == pytest.approx(list(reference["lbce"]), abs=1e-4)
