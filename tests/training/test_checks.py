"""Start-up checks: missing data and contradicting settings stop every script at once, in one line,
naming the settings and a value that works, before anything heavy loads or any file is written."""

import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.data import DataSourceError
from scenimefy.models import StyleGAN2Generator
from scenimefy.training.checks import looks_local
from scenimefy.training.config import ConfigError
from tests.support.paths import REPO
from tests.support.scripts import load_script


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder with photos/, anime/, pairs/ (a datasets folder), src/ (a 16 px StyleGAN2), out/."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for folder in ("photos", "anime"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    image = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    table = datasets.Dataset.from_dict({"real": [image], "anime": [image]}).cast_column("real", datasets.Image())
    (tmp_path / "pairs" / "data").mkdir(parents=True)
    table.cast_column("anime", datasets.Image()).to_parquet(str(tmp_path / "pairs" / "data" / "train.parquet"))
    torch.manual_seed(0)
    StyleGAN2Generator(size=16, style_dim=8, n_mlp=1, channel_max=8).save_pretrained(tmp_path / "src" / "generator")
    (tmp_path / "out").mkdir()
    return tmp_path


TRANSLATOR = ["--real_data", "photos", "--anime_data", "anime", "--paired_data", "pairs", "--output_dir", "out/run"]


def refused(script: str, argv: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_script(script).main(argv)
    return str(err.value)


def test_contradicting_settings_name_the_settings_and_a_value_that_works(place):
    message = refused("train_translator", [*TRANSLATOR, "--n_blocks", "2"])
    assert message == (
        "--nce_layers 0,4,8,12,16 does not fit --n_blocks 2: its encoder layers are 0..13; "
        "use --nce_layers 0,4,8,12,13 (or --n_blocks 5)"
    )
    assert "use --crop_size 64" in refused("train_translator", [*TRANSLATOR, "--load_size", "64", "--crop_size", "96"])
    assert "use --crop_size 32" in refused("train_translator", [*TRANSLATOR, "--load_size", "64", "--crop_size", "34"])
    assert "--decay_start_epoch 30 is past --epochs 20" in refused(
        "train_translator", [*TRANSLATOR, "--decay_start_epoch", "30"]
    )
    assert "nothing to train" in refused(
        "train_translator", [*TRANSLATOR, "--supervised", "false", "--unsupervised", "false"]
    )
    finetune = ["--source_model", "src", "--train_data", "anime", "--train_batch_size", "2", "--output_dir", "out/ft"]
    assert "--trainable_blocks 5 does not fit the 16 px --source_model (3 synthesis blocks): use 1 to 3" in refused(
        "finetune_stylegan", [*finetune, "--trainable_blocks", "5"]
    )
    assert "--patch_size 64 is larger than the 16 px images" in refused("finetune_stylegan", finetune)
    assert "add --random_priors true" in refused(
        "finetune_stylegan", [*finetune, "--patch_size", "8", "--clip_model", "tiny"]
    )
    stylegan = ["--train_data", "photos", "--output_dir", "out/sg"]
    assert "fewer than one batch (--train_batch_size 16): use --train_batch_size 2" in refused(
        "train_stylegan", stylegan
    )
    assert "--size 48: must be a power of two" in refused("train_stylegan", [*stylegan, "--size", "48"])
    pairs = ["--source", "src", "--target", "src", "--output_dir", "out/pairs", "--segmenter", "tiny"]
    assert "use --max_lbce 5.1" in refused("generate_pairs", pairs)
    assert "--max_candidates 3 < --num_pairs 30000" in refused(
        "generate_pairs", [*pairs, "--max_lbce", "5.1", "--max_candidates", "3"]
    )
    assert sorted(p.name for p in (place / "out").iterdir()) == []  # nothing was created


def test_missing_and_mistyped_data_are_refused_before_anything_loads(place):
    assert refused("train_stylegan", ["--train_data", "./nowhere"]) == "--train_data ./nowhere: no such folder"
    assert refused("train_stylegan", []).startswith("--train_data is required")
    assert refused("finetune_stylegan", ["--source_model", "src", "--train_data", "frames"]) == (
        "--train_data frames: no such folder (a Hub id is written owner/name)"
    )
    assert refused("finetune_stylegan", ["--source_model", "lhq.pt", "--train_data", "anime"]).startswith(
        "--source_model lhq.pt: no such folder or file"
    )
    # out/ is a folder here: `out/no_pairs` is a mistyped local path, never a Hub dataset id.
    assert refused("train_translator", [*TRANSLATOR[:4], "--paired_data", "out/no_pairs"]) == (
        "--paired_data out/no_pairs: no such folder (out/ is a folder here, so this is read as a local path, "
        "not a Hub id)"
    )
    assert refused("generate_pairs", ["--source", "~/gs", "--target", "src"]).startswith("--source ~/gs: no such")
    assert refused("train_translator", ["--resume", "out", *TRANSLATOR]).startswith("--resume out: not a complete")
    # A Hub id that cannot be read (offline, not cached) is found out before anything is written.
    with pytest.raises(DataSourceError, match="someone/uncached-photos"):
        load_script("train_stylegan").main(["--train_data", "someone/uncached-photos", "--output_dir", "out/sg"])
    assert sorted(p.name for p in (place / "out").iterdir()) == []


def test_what_looks_local_is_never_a_hub_id(place):
    for value in ("out/no_pairs", "./x", "../x", "/abs/x", "~/x", "photos", "a/b/c", "x\\y", "frames", "out"):
        assert looks_local(value), value
    for value in ("someone/anime-pairs", "facebook/mask2former-swin-base-IN21k-ade-semantic"):
        assert not looks_local(value), value


@pytest.mark.slow
def test_scripts_print_one_line_and_create_nothing(place):
    """The real scripts as processes: exit 2, one line on stderr, no traceback, no output folder.

    finetune_stylegan checks its data before loading CLIP / LPIPS (no open_clip output)."""
    runs = {
        "train_translator.py": [*TRANSLATOR, "--n_blocks", "2"],
        "finetune_stylegan.py": ["--source_model", "src", "--train_data", "missing", "--output_dir", "out/ft"],
        "generate_pairs.py": ["--source", "src", "--target", "src", "--segmenter", "tiny", "--output_dir", "out/p"],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "train" / name), *argv],
            cwd=place,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in runs.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, err
        assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"{name}: error: --"), err
    assert list((place / "out").iterdir()) == []
