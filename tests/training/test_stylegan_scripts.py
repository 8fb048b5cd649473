"""End-to-end runs of train/train_stylegan.py and train/finetune_stylegan.py under the accelerate launcher.

Tiny networks on tiny images, a few steps each. The launcher is run as
``python -m accelerate.commands.launch`` (the code behind ``accelerate launch``): the ``accelerate``
console script imports timm, and with it torchvision, before our scripts can install the
torchvision shim, which fails on this CPU-only torch.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.training.config import ConfigError
from tests.support.launch import accelerate_launch
from tests.support.paths import REPO
from tests.support.scripts import load_script

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture
def image_folder(tmp_path):
    """Six small photos of mixed sizes and formats, some in a subfolder."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "nested").mkdir(parents=True)
    for i in range(6):
        pixels = rng.integers(0, 255, (36 + 4 * i, 40, 3), dtype=np.uint8)
        folder = root / "nested" if i % 2 else root
        Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 3 else 'jpg'}")
    return root


def launch(script: str, args: list[str], num_processes: int = 1) -> str:
    """Run ``train/<script>`` under ``accelerate launch`` on CPU; returns its output."""
    proc = accelerate_launch(REPO / "train" / script, args, num_processes)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def metric_steps(output_dir, project):
    rows = [json.loads(line) for line in (output_dir / "logs" / project / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows]


@pytest.mark.slow
def test_train_stylegan_runs_checkpoints_and_resumes(tmp_path, image_folder):
    out = tmp_path / "run"
    common = [
        "--train_data",
        str(image_folder),
        "--output_dir",
        str(out),
        "--size",
        "16",
        "--style_dim",
        "16",
        "--n_mlp",
        "2",
        "--channel_max",
        "16",
        "--train_batch_size",
        "2",
        "--checkpointing_steps",
        "2",
        "--sample_steps",
        "1",
        "--num_sample_images",
        "4",
        "--g_reg_every",
        "2",
        "--d_reg_every",
        "2",
    ]
    launch("train_stylegan.py", common + ["--max_train_steps", "2"])
    assert json.loads((out / "checkpoint-2" / "complete.json").read_text())["step"] == 2
    assert (out / "checkpoint-2" / "generator" / "config.json").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000001.png", "step-0000002.png"]
    assert Image.open(out / "samples" / "step-0000002.png").size == (2 * 18 - 2, 2 * 18 - 2)
    first = StyleGAN2Generator.from_pretrained(out / "generator")
    assert (first.size, first.style_dim, first.config.channel_max) == (16, 16, 16)

    output = launch("train_stylegan.py", common + ["--max_train_steps", "3", "--resume", "latest"])
    assert "at step 2" in output and "resumed from" in output
    assert metric_steps(out, "stylegan") == [1, 2, 3]  # the resumed run logged step 3 only
    resumed = StyleGAN2Generator.from_pretrained(out / "generator")
    assert not torch.equal(resumed.to_rgb1.bias, first.to_rgb1.bias) or not torch.equal(
        resumed.conv1.conv.weight, first.conv1.conv.weight
    )
    StyleGAN2Discriminator.from_pretrained(out / "discriminator")


@pytest.mark.slow
def test_finetune_trains_only_the_last_blocks(tmp_path, image_folder):
    torch.manual_seed(0)
    source = StyleGAN2Generator(size=32, style_dim=16, n_mlp=2, channel_max=16)
    source.save_pretrained(tmp_path / "source" / "generator")
    StyleGAN2Discriminator(size=32, channel_max=16).save_pretrained(tmp_path / "source" / "discriminator")
    clip_config = tmp_path / "tiny-clip-finetune.json"
    clip_config.write_text(json.dumps(TINY_CLIP))
    out = tmp_path / "finetuned"
    launch(
        "finetune_stylegan.py",
        [
            "--source_model",
            str(tmp_path / "source"),
            "--train_data",
            str(image_folder),
            "--output_dir",
            str(out),
            "--trainable_blocks",
            "2",
            "--train_batch_size",
            "2",
            "--max_train_steps",
            "3",
            "--d_reg_every",
            "2",
            "--ema_decay",
            "0.5",
            "--checkpointing_steps",
            "3",
            "--sample_steps",
            "0",
            "--num_sample_images",
            "4",
            "--random_priors",
            "--clip_model",
            str(clip_config),
            "--lpips_net",
            "alex",
            "--patch_size",
            "8",
            "--num_patches",
            "4",
        ],
        num_processes=2,
    )
    assert metric_steps(out, "stylegan-finetune") == [1, 2, 3]
    row = json.loads((out / "logs" / "stylegan-finetune" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"g_gan", "g_clip", "g_lpips", "g_patch", "g_loss", "d_loss"} <= set(row)
    # Samples: G_s | G_t pairs side by side, 2 pairs per row.
    assert Image.open(out / "samples" / "step-0000003.png").size == (4 * 34 - 2, 2 * 34 - 2)

    target = StyleGAN2Generator.from_pretrained(out / "generator")
    source_state, target_state = source.state_dict(), target.state_dict()
    # Blocks 0-1 (4 and 8 px), the mapping network and the constant input are frozen; 16 and 32 px train.
    trained_prefixes = ("convs.2.", "convs.3.", "convs.4.", "convs.5.", "to_rgbs.1.", "to_rgbs.2.")
    frozen = [k for k in source_state if not k.startswith(trained_prefixes)]
    trained = [k for k in source_state if k.startswith(trained_prefixes) and not k.startswith("noises")]
    assert any(k.startswith("style.") for k in frozen) and "conv1.conv.modulation.weight" in frozen
    for key in frozen:
        assert torch.equal(source_state[key], target_state[key]), f"frozen {key} changed"
    for key in trained:
        assert not torch.equal(source_state[key], target_state[key]), f"trainable {key} did not change"


def test_scripts_refuse_bad_settings_before_training(tmp_path, monkeypatch):
    train = load_script("train_stylegan")
    with pytest.raises(ConfigError, match="unknown setting"):
        train.main(["--train_data", "x", "--no_such_setting", "1"])
    with pytest.raises(ConfigError, match="--train_data"):
        train.main([])
    finetune = load_script("finetune_stylegan")
    with pytest.raises(ConfigError, match="--source_model"):
        finetune.main(["--train_data", str(tmp_path)])
    config = finetune.FinetuneStyleGANConfig()
    assert (config.lambda_lpips, config.lambda_global, config.lambda_patch, config.max_train_steps) == (
        0.01,
        1.0,
        0.05,
        1000,
    )
    with pytest.raises(ConfigError, match="trainable_blocks"):
        finetune.freeze_all_but_last_blocks(StyleGAN2Generator(size=8, style_dim=4, n_mlp=1, channel_max=4), 3)
