"""Stage 4 (Scenimefy-Lite): the teacher cache, the losses, the step, and train/distill_translator.py
end to end under the real ``accelerate launch`` (one process, then two killed mid-run and resumed)."""

import functools
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.inference import translate
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.models import ScenimefyLiteTranslator, ScenimefyTranslator
from scenimefy.training import distill
from scenimefy.training.checkpoints import checkpoint_dirs
from scenimefy.training.config import ConfigError
from scenimefy.training.tracking import read_metrics
from tests.support.launch import accelerate_command, accelerate_launch
from tests.support.paths import REPO
from tests.support.scripts import load_script, one_torch_thread

SCRIPT = REPO / "train" / "distill_translator.py"
PRESET = REPO / "train" / "configs" / "distill-tiny.yaml"
STOP = "; resume with --resume latest"


@pytest.fixture(autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 smooth photos of several sizes (two in a subfolder) and a tiny teacher folder."""
    root = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(0)
    (root / "photos" / "sub").mkdir(parents=True)
    for i in range(6):
        h, w = (40 + 8 * i, 72 - 4 * i)
        small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        image.save(root / "photos" / ("sub" if i % 3 == 0 else "") / f"p{i}.png")
    torch.manual_seed(0)
    ScenimefyTranslator(ngf=8, n_blocks=2).save_pretrained(root / "teacher")
    return root


def exact_teacher(folder):
    teacher = ScenimefyTranslator.from_pretrained(folder).eval()
    return functools.partial(translate, teacher, exact=True)


# ---------------------------------------------------------------------------- library


def test_views_are_deterministic_per_seed_and_an_interrupted_cache_resumes(data, tmp_path):
    photos = sorted((data / "photos").rglob("*.png"))
    keys = [str(p.relative_to(data / "photos")) for p in photos]

    def load(i):
        return np.asarray(Image.open(photos[i]).convert("RGB"))

    settings = distill.ViewSettings(crop=32, views=3, short_sides=(32, 56), seed=4, precision="exact")
    run = exact_teacher(data / "teacher")
    whole = distill.TeacherCache(tmp_path / "a", keys, settings)
    assert whole.build(range(len(keys)), load, run) == len(keys)
    # an interrupted build (two photos done), resumed in another order: the same files
    parts = distill.TeacherCache(tmp_path / "b", keys, settings)
    assert parts.build([4, 1], load, run) == 2
    assert parts.missing() == [0, 2, 3, 5]
    assert parts.build(range(len(keys)), load, run) == 4 and parts.build(range(len(keys)), load, run) == 0
    x, y = whole.arrays()
    x2, y2 = parts.arrays()
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == y.shape == (len(keys) * 3, 32, 32, 3) and x.dtype == np.uint8
    # the targets are the teacher's outputs on exactly those crops
    again = run(torch.from_numpy(x[:3]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    expected = ((again.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(expected.astype(int) - y[:3].astype(int)).max() <= 1
    # another seed, other crops; views differ in position and scale within a photo
    other = distill.TeacherCache(tmp_path / "c", keys, distill.ViewSettings(32, 3, (32, 56), seed=5))
    other.build([0], load, run)
    assert not np.array_equal(other.arrays([0])[0], x[:3]) and not np.array_equal(x[0], x[1])
    item = distill.ViewDataset(whole)[4]
    assert item["photo"].shape == item["teacher"].shape == (3, 32, 32) and item["photo"].abs().max() <= 1


def test_losses_are_the_documented_functions():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    assert distill.pixel_l1(a, a) == 0 and distill.gradient_l1(a, a) == 0
    assert distill.pixel_l1(a, a + 0.25).item() == pytest.approx(0.25)
    assert distill.gradient_l1(a, a + 0.25).item() == pytest.approx(0, abs=1e-6)  # a constant shift has no edges
    blurred = torch.nn.functional.avg_pool2d(a, 3, 1, 1)
    assert distill.gradient_l1(blurred, a) > 0.2  # blur is what the term penalises
    loss, terms = distill.distill_loss(blurred, a, lambda_l1=1.0, lambda_gradient=0.5)
    assert set(terms) == {"l1", "gradient"}
    assert loss.item() == pytest.approx(terms["l1"] + 0.5 * terms["gradient"], rel=1e-5)
    with pytest.raises(ValueError, match="lpips_model"):
        distill.distill_loss(a, a, lambda_lpips=0.1)
    from scenimefy.losses.finetune import load_lpips

    lpips = load_lpips("alex", pretrained=False)  # the offline stand-in: random weights, downloads nothing
    big = torch.rand(1, 3, 64, 64) * 2 - 1  # AlexNet's pooling needs more than 16 px
    smooth = torch.nn.functional.avg_pool2d(big, 3, 1, 1)
    loss, terms = distill.distill_loss(smooth, big, lambda_gradient=0.0, lambda_lpips=0.5, lpips_model=lpips)
    assert set(terms) == {"l1", "lpips"} and terms["lpips"] > 0
    assert loss.item() == pytest.approx(terms["l1"] + 0.5 * terms["lpips"], rel=1e-5)
    factor = distill.warmup_cosine(100, 10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == 1.0 and factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0, abs=1e-12)


def test_steps_bring_the_student_closer_to_the_teacher(data, tmp_path):
    torch.manual_seed(0)
    student = ScenimefyLiteTranslator(channels=(8, 8, 16), n_blocks=1).train()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    batch = {"photo": x, "teacher": exact_teacher(data / "teacher")(x)}
    optimizer = torch.optim.Adam(student.parameters(), 3e-3)
    first = distill.distill_step(student, optimizer, batch, distill.LossWeights())
    for _ in range(20):
        last = distill.distill_step(student, optimizer, batch, distill.LossWeights(), memory_format=torch.channels_last)
    assert last["loss"] < 0.8 * first["loss"] and set(first) == {"loss", "l1", "gradient"}
    grid = distill.sample_grid(*(np.zeros((2, 16, 16, 3), np.uint8),) * 3)
    assert grid.size == (48, 32)


# ---------------------------------------------------------------------------- the script's checks


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--teacher", "nowhere/Shinkai_net_G.pth"], "--teacher nowhere/Shinkai_net_G.pth: no such file"),
        (["--teacher", "./missing"], "--teacher ./missing: no such folder or file, and not a style"),
        (["--photos", "./missing"], "--photos ./missing: no such folder"),
        (["--crop_size", "30"], "--crop_size 30: the student needs a multiple of 4; use 28"),
        (["--student_channels", "8,8,8,16", "--crop_size", "36"], "needs a multiple of 8; use 32"),
        (["--min_short_side", "16"], "crop_size (32) <= min <= max: use --min_short_side 32"),
        (["--train_batch_size", "20"], "gives 6 x 2 views, fewer than one batch"),
        (["--student_head_kernel", "4"], "--student_head_kernel 4: must be odd"),
        (["--teacher_precision", "half"], "use fast or exact"),
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id owner/name"),
    ],
)
def test_settings_that_cannot_work_stop_before_anything_is_written(data, tmp_path, flags, message):
    out = tmp_path / "run"
    argv = ["--config", str(PRESET), "--teacher", str(data / "teacher"), "--photos", str(data / "photos")]
    with pytest.raises(ConfigError) as err:
        load_script("distill_translator").main([*argv, "--output_dir", str(out), *flags])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


# ---------------------------------------------------------------------------- accelerate launch


def run_args(data, out, *extra):
    return ["--config", PRESET, "--teacher", data / "teacher", "--photos", data / "photos", "--output_dir", out, *extra]


@pytest.mark.slow
def test_one_process_run_writes_the_student_its_card_samples_and_metrics(data, tmp_path):
    out = tmp_path / "run"
    done = accelerate_launch(SCRIPT, run_args(data, out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 photo(s) computed, 0 cached" in done.stderr
    student = out / "student"
    assert {p.name for p in student.iterdir()} == {
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "training_config.json",
    }
    record = json.loads((student / "training_config.json").read_text())
    assert record["script"] == "train/distill_translator.py" and record["steps"] == 12
    assert record["data"]["teacher"] == str(data / "teacher")
    card = (student / "README.md").read_text()
    assert "# Scenimefy-Lite translator" in card and "widths (8, 8, 16)" in card and "Distilled from" in card
    rows = read_metrics(out / "logs" / "distill" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert {"loss", "l1", "gradient", "lr", "l1_levels"} <= set(rows[0]) and "sample_l1_levels" in rows[5]
    with Image.open(out / "samples" / "step-0000012.png") as grid:
        assert grid.size == (3 * 64, 2 * 64)  # [photo | teacher | student] x 2 sample photos
    pipe = ScenimefyPipeline.from_pretrained(student)
    assert type(pipe.translator) is ScenimefyLiteTranslator
    assert pipe(np.zeros((20, 28, 3), np.uint8), output_type="np").shape == (20, 28, 3)
    # a second run with the same settings reuses the cache
    again = accelerate_launch(SCRIPT, run_args(data, tmp_path / "again", "--cache_dir", out / "teacher_cache"))
    assert again.returncode == 0 and "0 photo(s) computed, 6 cached" in again.stderr, again.stderr[-2000:]


def steps_logged(out) -> list[int]:
    path = out / "logs" / "distill" / "metrics.jsonl"
    return [row["step"] for row in read_metrics(path)] if path.is_file() else []


@pytest.mark.slow
def test_two_processes_interrupted_then_resumed_from_latest_log_every_step_once(data, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    extra = ["--max_train_steps", "5000", "--checkpointing_steps", "5", "--sample_steps", "0"]
    command, env = accelerate_command(SCRIPT, run_args(data, out, *extra), num_processes=2)
    with open(log, "w") as sink:  # Ctrl-C in a terminal: SIGINT to the whole foreground process group
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink, start_new_session=True)
        deadline = time.monotonic() + 240
        while not (checkpoint_dirs(out) and len(steps_logged(out)) >= 7):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    text = log.read_text()
    assert "MULTI_CPU" in text and "2 process(es)" in text
    stop_lines = [line for line in text.splitlines() if STOP in line]
    assert len(stop_lines) == 1 and stop_lines[0].startswith("stopped at step "), text[-3000:]
    stopped_at = int(stop_lines[0].split("stopped at step ")[1].split(";")[0])
    last = checkpoint_dirs(out)[-1]
    assert not (out / "student").exists()
    # the two processes computed the cache between them, each photo once
    assert len(list((out / "teacher_cache").rglob("*.npz"))) == 6

    resumed = accelerate_launch(
        SCRIPT, run_args(data, out, *extra[2:], "--resume", "latest", "--max_train_steps", str(stopped_at + 3)), 2
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {last}" in resumed.stderr and "0 photo(s) computed" in resumed.stderr
    assert steps_logged(out) == list(range(1, stopped_at + 4))  # continuous, no step twice
    assert (out / "student" / "config.json").is_file() and (out / "student" / "README.md").is_file()
