"""Stage-3 training: schedules, the shared train step, and train/train_translator.py end to end."""

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.models import ScenimefyTranslator
from scenimefy.training.checkpoints import checkpoint_dirs
from scenimefy.training.config import ConfigError, parse_config
from scenimefy.training.tracking import read_metrics
from scenimefy.training.translator import (
    LossSettings,
    build_networks,
    constant_then_linear_decay,
    supervised_weight,
    train_step,
)
from tests.support.launch import accelerate_command
from tests.support.paths import REPO
from tests.support.scripts import load_script, one_torch_thread

SCRIPT = REPO / "train" / "train_translator.py"
TINY_LAYERS = (0, 4, 8, 12, 13)  # n_blocks=2 has no layer 16


@pytest.fixture(autouse=True)
def one_thread():
    with one_torch_thread():
        yield


# ---------------------------------------------------------------------------- schedules


def test_supervised_weight_follows_the_paper():
    assert supervised_weight(1, 20) == 1.0
    for t in range(1, 21):
        assert supervised_weight(t, 20) == pytest.approx(math.cos(math.pi / 40 * (t - 1)))
    assert supervised_weight(20, 20) == pytest.approx(math.cos(19 * math.pi / 40))  # ~0.078, not 1.0
    values = [supervised_weight(t, 20) for t in range(1, 21)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert supervised_weight(3, 4) == pytest.approx(math.cos(math.pi / 8 * 2))  # any T: cos(pi/2T (t-1))
    assert supervised_weight(20, 20, decay=False) == 1.0  # the "w/o decay" ablation / reference behaviour
    with pytest.raises(ValueError):
        supervised_weight(0, 20)


def test_learning_rate_constant_then_linear_to_zero():
    factor = constant_then_linear_decay(total_steps=20, decay_start=10)
    assert [factor(s) for s in (0, 9, 10)] == [1.0, 1.0, 1.0]
    assert factor(15) == pytest.approx(0.5)
    assert factor(20) == 0.0


# ---------------------------------------------------------------------------- the train step


def _batch(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(1, 3, size, size, generator=g) * 2 - 1 for k in ("real", "anime", "pair_real", "pair_anime")}


def _optimizers(nets):
    g = torch.optim.Adam([p for m in nets.generator_side() for p in m.parameters()], 2e-4, betas=(0.5, 0.999))
    d_params = [p for m in nets.discriminators() for p in m.parameters()]
    return g, (torch.optim.Adam(d_params, 2e-4, betas=(0.5, 0.999)) if d_params else None)


@pytest.mark.parametrize(
    "branches, built, logged",
    [
        (
            {},
            {"disc_unpaired", "disc_paired", "patch_head", "style_patch_head"},
            {"d_unpaired", "d_paired", "g_gan", "src", "hdce", "hdce_identity", "g_gan_pair", "style"},
        ),
        (
            {"supervised": False},
            {"disc_unpaired", "patch_head"},
            {"d_unpaired", "g_gan", "src", "hdce", "hdce_identity"},
        ),
        ({"unsupervised": False}, {"disc_paired", "style_patch_head"}, {"d_paired", "g_gan_pair", "style"}),
    ],
)
def test_train_step_updates_every_network_of_the_enabled_branches(branches, built, logged):
    torch.manual_seed(0)
    settings = LossSettings(nce_layers=TINY_LAYERS, num_patches=16, **branches)
    nets = build_networks(settings, {"ngf": 8, "n_blocks": 2}, ndf=8, embed_dim=16)
    names = ["disc_unpaired", "disc_paired", "patch_head", "style_patch_head"]
    assert {n for n in names if getattr(nets, n) is not None} == built
    before = {n: [p.detach().clone() for p in getattr(nets, n).parameters()] for n in ["generator", *built]}
    logs = train_step(nets, *_optimizers(nets), _batch(), 1, 20, settings)
    assert logged | {"g_total", "lambda_sup", "hdce_gamma"} == set(logs)
    assert all(math.isfinite(v) for v in logs.values())
    for name, params in before.items():
        changed = any(not torch.equal(a, b) for a, b in zip(params, getattr(nets, name).parameters()))
        assert changed, f"{name} was not updated"


def test_style_weight_applied_once_and_decayed_with_lambda_sup():
    torch.manual_seed(0)
    base = LossSettings(nce_layers=TINY_LAYERS, num_patches=16, unsupervised=False, lambda_gan_pair=0.0)
    logs = {}
    for lam in (0.05, 1.0):
        torch.manual_seed(0)
        settings = LossSettings(**{**base.__dict__, "lambda_style": lam})
        nets = build_networks(settings, {"ngf": 8, "n_blocks": 2}, ndf=8, embed_dim=16)
        torch.manual_seed(1)
        logs[lam] = train_step(nets, *_optimizers(nets), _batch(), 11, 20, settings)
    # same networks and patches: the logged term is weight x lambda_sup(11) x PatchNCE, linear in the
    # weight (0.05, not 0.05^2)
    assert logs[0.05]["style"] == pytest.approx(0.05 * logs[1.0]["style"], rel=1e-5)
    assert logs[1.0]["style"] > 0


def test_generator_stays_frozen_during_its_own_discriminator_update():
    settings = LossSettings(nce_layers=TINY_LAYERS, num_patches=16)
    nets = build_networks(settings, {"ngf": 8, "n_blocks": 2}, ndf=8, embed_dim=16)
    train_step(nets, *_optimizers(nets), _batch(), 1, 20, settings)
    assert all(not p.requires_grad for d in nets.discriminators() for p in d.parameters())
    assert all(p.requires_grad for p in nets.generator.parameters())


# ---------------------------------------------------------------------------- the script


def _smooth_image(w, h, rng):
    return Image.fromarray(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)).resize(
        (w, h), Image.BILINEAR
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """4 real photos (one in a subfolder), 4 anime images, 3 stage-2 style pseudo pairs, a tiny config."""
    import datasets

    root = tmp_path_factory.mktemp("translator_data")
    rng = np.random.default_rng(0)
    (root / "real" / "sub").mkdir(parents=True)
    (root / "anime").mkdir()
    for i in range(4):
        _smooth_image(40, 36, rng).save(root / "real" / ("sub" if i % 2 else "") / f"{i}.jpg")
        _smooth_image(36, 36, rng).save(root / "anime" / f"{i}.png")
    pairs = [(_smooth_image(36, 36, rng), _smooth_image(36, 36, rng)) for _ in range(3)]
    table = datasets.Dataset.from_dict(
        {
            "real": [r for r, _ in pairs],
            "anime": [a for _, a in pairs],
            "seed": [0, 1, 2],
            "lbce": [4.1, 4.2, 4.3],
            "classes": [2, 3, 4],
        }
    )
    table = table.cast_column("real", datasets.Image()).cast_column("anime", datasets.Image())
    (root / "pairs" / "data").mkdir(parents=True)
    table.to_parquet(str(root / "pairs" / "data" / "train-00000-of-00001.parquet"))
    config = root / "tiny.yaml"
    config.write_text(
        f"real_data: {root / 'real'}\nanime_data: {root / 'anime'}\npaired_data: {root / 'pairs'}\n"
        "load_size: 36\ncrop_size: 32\nngf: 8\nn_blocks: 2\nndf: 8\nembed_dim: 16\nnum_patches: 16\n"
        "nce_layers: [0, 4, 8, 12, 13]\nepochs: 2\ncheckpointing_steps: 2\nsample_steps: 2\nnum_sample_images: 2\n"
    )
    return root


@pytest.fixture
def reset_accelerate():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_paper_configs_parse():
    module = load_script("train_translator")
    shinkai = parse_config(module.TrainTranslatorConfig, ["--config", str(REPO / "train/configs/shinkai.yaml")])
    assert (shinkai.epochs, shinkai.lambda_style, shinkai.lambda_src, shinkai.lambda_hdce) == (20, 0.05, 0.05, 0.1)
    assert (shinkai.learning_rate, shinkai.adam_beta1, shinkai.lambda_vgg) == (2e-4, 0.5, 0.0)
    assert tuple(shinkai.nce_layers) == (0, 4, 8, 12, 16) and shinkai.hdce_identity
    hosoda = parse_config(
        module.TrainTranslatorConfig, ["--config", str(REPO / "train/configs/hosoda.yaml"), "--epochs", "3"]
    )
    assert hosoda.lambda_vgg == 0.2 and hosoda.epochs == 3
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config(module.TrainTranslatorConfig, ["--lamda_style", "1"])


def test_single_process_run_writes_translator_samples_logs_and_checkpoints(tiny_data, tmp_path, reset_accelerate):
    out = tmp_path / "run"
    load_script("train_translator").main(["--config", str(tiny_data / "tiny.yaml"), "--output_dir", str(out)])
    # 4 unpaired items, batch 1, 1 process: 4 steps/epoch x 2 epochs
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    assert (out / "checkpoint-8" / "translator" / "config.json").is_file()
    assert sorted(p.name for p in (out / "samples").glob("*.png"))[-1] == "step-0000008.png"
    grid = Image.open(out / "samples" / "step-0000008.png")
    assert grid.size == (64, 64)  # 2 rows of [photo | translation] at 32 px
    rows = read_metrics(out / "logs" / "translator" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[0]["lambda_sup"] == 1.0 and rows[-1]["lambda_sup"] == pytest.approx(math.cos(math.pi / 4))
    assert rows[0]["lr"] == pytest.approx(2e-4) and rows[-1]["lr"] == pytest.approx(0.0)
    assert json.loads((out / "logs" / "translator" / "config.json").read_text())["lambda_style"] == 0.05

    translator = ScenimefyTranslator.from_pretrained(out / "translator")
    assert translator.config.ngf == 8 and translator.config.n_blocks == 2
    with torch.no_grad():
        y = translator(torch.zeros(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32) and y.abs().max() <= 1


def test_trained_translator_folder_loads_in_the_pipeline(tiny_data, tmp_path, reset_accelerate):
    from scenimefy.inference import pipeline

    out = tmp_path / "run"
    load_script("train_translator").main(
        ["--config", str(tiny_data / "tiny.yaml"), "--output_dir", str(out), "--max_train_steps", "1"]
    )
    pipe = pipeline.ScenimefyPipeline.from_pretrained(str(out / "translator"))
    image = pipe(Image.new("RGB", (40, 32), (120, 160, 200)))
    assert isinstance(image, Image.Image) and image.size == (40, 32)


@pytest.mark.parametrize("flags", [["--supervised", "false"], ["--unsupervised", "false", "--real_data", ""]])
def test_single_branch_runs(tiny_data, tmp_path, reset_accelerate, flags):
    out = tmp_path / "run"
    load_script("train_translator").main(
        ["--config", str(tiny_data / "tiny.yaml"), "--output_dir", str(out), "--max_train_steps", "2", *flags]
    )
    assert (out / "translator" / "config.json").is_file()


def test_hosoda_vgg_loss_runs_and_missing_weights_fail_fast(tiny_data, tmp_path, monkeypatch, reset_accelerate):
    out = tmp_path / "run"
    argv = [
        "--config",
        str(tiny_data / "tiny.yaml"),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "1",
        "--lambda_vgg",
        "0.2",
    ]
    load_script("train_translator").main([*argv, "--vgg_weights", "random"])
    assert "vgg" in read_metrics(out / "logs" / "translator" / "metrics.jsonl")[0]
    from scenimefy.losses.perceptual import PerceptualWeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))  # HF_HUB_OFFLINE=1 from conftest
    start = time.perf_counter()
    with pytest.raises(PerceptualWeightsError, match="not cached"):
        load_script("train_translator").main([*argv, "--output_dir", str(tmp_path / "run2")])
    assert time.perf_counter() - start < 60


def test_missing_data_is_a_config_error(tiny_data, tmp_path, reset_accelerate):
    with pytest.raises(ConfigError, match="--paired_data"):
        load_script("train_translator").main(
            ["--config", str(tiny_data / "tiny.yaml"), "--output_dir", str(tmp_path), "--paired_data", ""]
        )


def test_push_to_hub_is_checked_early_and_goes_through_the_one_upload_path(
    tiny_data, tmp_path, monkeypatch, reset_accelerate
):
    from huggingface_hub import constants

    from scenimefy.hub.publish import PublishError

    out = tmp_path / "run"
    argv = [
        "--config",
        str(tiny_data / "tiny.yaml"),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "1",
        "--push_to_hub",
    ]
    with pytest.raises(ConfigError, match="hub_model_id owner/name"):
        load_script("train_translator").main(argv)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):  # conftest: offline
        load_script("train_translator").main([*argv, "--hub_model_id", "someone/x"])
    assert not out.exists()  # refused before anything was created
    # Online but the Hub unreachable: the run trains, saves translator/ with its card, then the upload
    # (scenimefy.hub.publish, the one upload path) fails with its one-line reason.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(PublishError, match="cannot reach http://127.0.0.1:9"):
        load_script("train_translator").main([*argv, "--hub_model_id", "someone/x"])
    assert {p.name for p in (out / "translator").iterdir()} == {
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training_config.json",
    }


# ---------------------------------------------------------------------------- 2 processes, kill, resume


def _launch(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    """The real `accelerate launch` on two CPU processes (gloo), in the background."""
    command, env = accelerate_command(SCRIPT, ["--config", config, "--output_dir", out, *extra], num_processes=2)
    env["CUDA_VISIBLE_DEVICES"] = ""
    log = open(out.parent / f"{out.name}.log", "ab")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it (torchrun starts its workers in their own sessions)."""
    import psutil

    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for proc in [*tree, psutil.Process(process.pid)] if process.poll() is None else tree:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait()
    psutil.wait_procs(tree, timeout=30)


@pytest.mark.slow
def test_two_processes_killed_mid_run_resume_from_latest_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # 4 unpaired items / 2 processes = 2 steps per epoch; 40 epochs = 80 steps, checkpoint every 2
    run = ["--epochs", "40", "--sample_steps", "0"]
    first = _launch(tiny_data / "tiny.yaml", out, *run)
    deadline = time.monotonic() + 240
    try:
        while not checkpoint_dirs(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint_dirs(out), (out.parent / "run.log").read_text()[-3000:]
    finally:
        _kill_tree(first)  # the launcher and both workers, mid-run
    assert not (out / "translator").exists(), "the first run finished before it could be killed"
    killed_at = int(checkpoint_dirs(out)[-1].name.split("-")[1])
    assert killed_at < 80

    second = _launch(tiny_data / "tiny.yaml", out, *run, "--resume", "latest")
    assert second.wait(timeout=300) == 0, (out.parent / "run.log").read_text()[-3000:]
    log = (out.parent / "run.log").read_text()
    assert "resumed from" in log and "MULTI_CPU" in log and "2 process(es)" in log
    rows = read_metrics(out / "logs" / "translator" / "metrics.jsonl")
    # the rows the killed run logged past its last checkpoint were dropped on resume: every step once
    assert [r["step"] for r in rows] == list(range(1, 81))
    assert checkpoint_dirs(out)[-1].name == "checkpoint-80"
    translator = ScenimefyTranslator.from_pretrained(out / "translator")
    with torch.no_grad():
        assert translator(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
