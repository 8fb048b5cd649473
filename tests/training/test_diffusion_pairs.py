"""train/diffusion_pairs.py end to end with a tiny random Stable Diffusion + ControlNet and a tiny Mask2Former."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from scenimefy.data.edges import canny, edge_alignment, edge_f_score
from scenimefy.models.segmenter import SemanticSegmenter
from scenimefy.training.config import ConfigError
from scenimefy.training.diffusion_pairs import fit_photo, photo_seed
from scenimefy.training.tiny import save_tiny_stable_diffusion
from tests.support.launch import accelerate_command
from tests.support.paths import REPO
from tests.support.scripts import load_pairs, load_script, one_torch_thread, run_in_process
from tests.support.tiny_mask2former import tiny_mask2former

SCRIPT = REPO / "train" / "diffusion_pairs.py"


@pytest.fixture(scope="module")
def script():
    return load_script("diffusion_pairs")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """A random tiny Mask2Former as a folder (the selection loads it like the real one)."""
    folder = tmp_path_factory.mktemp("m2f")
    tiny_mask2former().save_pretrained(folder)
    return folder


def shapes_image(rng, width=48, height=40) -> Image.Image:
    """A photo stand-in with clear edges: a few flat rectangles on a flat background."""
    image = np.full((height, width, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    for _ in range(3):
        x0, y0 = rng.integers(0, width - 12), rng.integers(0, height - 12)
        image[y0 : y0 + rng.integers(6, 12), x0 : x0 + rng.integers(6, 12)] = rng.integers(0, 256, 3)
    return Image.fromarray(image)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    (root / "b").mkdir()
    for i in range(6):
        shapes_image(rng).save(root / ("b" if i % 2 else "") / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny model as diffusers folders: loaded through from_pretrained like a downloaded checkpoint."""
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("sd"))


def args(models, photos, out, segmenter="tiny", **overrides):
    model, controlnet = models
    settings = {
        "photos": photos,
        "model": model,
        "controlnet": controlnet,
        "segmenter": segmenter,
        "output_dir": out,
        "resolution": 32,
        "num_inference_steps": 4,
        "strength": 0.5,
        "scheduler": "ddim",
        "block_size": 2,
        "batch_size": 2,
        "max_lbce": 10.0,  # a random Mask2Former scores ~ln(150) > 5: accept everything by default
        "min_classes": 0,
        "seed": 1,
        "photos_license": "hand-built test images",
    }
    settings.update(overrides)
    return [f"--{k}={v}" for k, v in settings.items()]


def rows(out) -> list[dict]:
    """Every cell of every shard, images as their PNG bytes: equal lists mean byte-identical pairs."""
    found = []
    for path in sorted((out / "data").glob("train-b*.parquet")):
        table = pq.read_table(path).to_pylist()
        found += [{k: (v["bytes"] if isinstance(v, dict) else v) for k, v in row.items()} for row in table]
    return found


@pytest.fixture(scope="module")
def reference(script, models, photos, segmenter, tmp_path_factory):
    """One uninterrupted single-process run over the 6 photos, every pair kept."""
    out = tmp_path_factory.mktemp("pairs") / "ref"
    assert run_in_process(script, args(models, photos, out, segmenter)) == 0
    return out


def test_pairs_dataset_loads_with_the_stage_2_columns_and_true_scores(reference, photos, segmenter, tmp_path):
    ds = load_pairs(reference, tmp_path)
    assert ds.num_rows == 6
    assert ds.column_names[:5] == ["real", "anime", "seed", "lbce", "classes"]  # stage 2's, then ours
    assert {"edge_score", "photo", "prompt", "negative_prompt", "strength", "guidance_scale"} <= set(ds.column_names)
    assert list(ds["seed"]) == [photo_seed(1, i) for i in range(6)]
    assert list(ds["photo"]) == [p.relative_to(photos).as_posix() for p in sorted(photos.rglob("*.png"))]
    assert "Hosoda" not in ds[0]["prompt"] and "Shinkai" in ds[0]["prompt"]  # the default preset
    row = ds[0]
    assert row["real"].size == (32, 32) and row["anime"].size == (32, 32)
    # `real` is the photo's centre crop, exactly; `anime` differs from it (the model changed it).
    with Image.open(photos / row["photo"]) as photo:
        expected = fit_photo(photo, 32, "crop")
    real, anime = np.array(row["real"]), np.array(row["anime"])
    assert np.array_equal(real, expected) and not np.array_equal(real, anime)
    # lbce / classes are stage 2's scores of the stored images; edge_score their edge alignment.
    real_t = torch.from_numpy(real).permute(2, 0, 1)[None]
    anime_t = torch.from_numpy(anime).permute(2, 0, 1)[None]
    lbce, classes = SemanticSegmenter.from_pretrained(segmenter).score_pairs(anime_t, real_t)
    assert row["lbce"] == pytest.approx(lbce.item(), abs=1e-4) and row["classes"] == classes.item()
    assert row["edge_score"] == pytest.approx(edge_alignment(real, anime), abs=1e-6)

    card = (reference / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 6
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*"
    assert "photos turned into candidates: 6; kept by the selection: 6" in card
    assert "L_BCE of every candidate" in card and "edge alignment photo vs anime" in card
    assert "hand-built test images" in card and "## Sources and licences" in card and row["prompt"] in card
    assert not list(reference.rglob(".tmp-*"))


def test_same_seed_gives_byte_identical_pairs_and_another_seed_other_ones(
    script, models, photos, segmenter, reference, tmp_path
):
    again = tmp_path / "again"
    assert run_in_process(script, args(models, photos, again, segmenter, max_photos=4)) == 0
    assert rows(again) == rows(reference)[:4]
    other = tmp_path / "other"
    assert run_in_process(script, args(models, photos, other, max_photos=2, seed=2)) == 0
    assert [r["anime"] for r in rows(other)] != [r["anime"] for r in rows(reference)[:2]]
    assert [r["real"] for r in rows(other)] == [r["real"] for r in rows(reference)[:2]]


def test_max_photos_may_grow_and_shrink_between_runs(script, models, photos, segmenter, reference, tmp_path):
    out = tmp_path / "pairs"
    assert run_in_process(script, args(models, photos, out, segmenter, max_photos=3)) == 0  # block 1: 1 photo
    assert rows(out)[:2] == rows(reference)[:2]  # block 0 as in the reference (a batch of 1 may differ in bits)
    assert [r["seed"] for r in rows(out)] == [r["seed"] for r in rows(reference)[:3]]
    assert run_in_process(script, args(models, photos, out, segmenter)) == 0  # block 1 made again, block 2 added
    assert rows(out) == rows(reference)
    assert run_in_process(script, args(models, photos, out, segmenter, max_photos=4)) == 0  # block 2 dropped
    assert rows(out) == rows(reference)[:4]
    assert "photos turned into candidates: 4;" in (out / "README.md").read_text()


def test_selection_of_stage_2_filters_the_pairs(script, models, photos, segmenter, reference, tmp_path):
    lbce = [r["lbce"] for r in rows(reference)]
    ordered = sorted(lbce)
    threshold = (ordered[2] + ordered[3]) / 2
    passing = [i for i, value in enumerate(lbce) if value < threshold]
    assert len(passing) == 3
    out = tmp_path / "strict"
    assert run_in_process(script, args(models, photos, out, segmenter, max_lbce=threshold)) == 0
    kept = rows(out)
    assert [r["seed"] for r in kept] == [photo_seed(1, i) for i in passing]
    assert [r["anime"] for r in kept] == [rows(reference)[i]["anime"] for i in passing]
    assert "kept by the selection: 3 (50.0%)" in (out / "README.md").read_text()
    # min_classes: "more than the most classes any photo shows" keeps none, and says so (exit status 1).
    none = tmp_path / "none"
    most = max(r["classes"] for r in rows(reference))
    assert run_in_process(script, args(models, photos, none, segmenter, min_classes=most)) == 1
    assert rows(none) == [] and "kept by the selection: 0" in (none / "README.md").read_text()


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_single_process_pairs(models, photos, segmenter, reference, tmp_path):
    """2 processes under `accelerate launch`, killed mid-run (SIGKILL), then run again: the same
    pairs, byte for byte, as one uninterrupted process."""
    out = tmp_path / "pairs"
    command, env = accelerate_command(SCRIPT, args(models, photos, out, segmenter), num_processes=2)
    # The run at low priority: on a busy machine this test's polling still wakes in time to kill
    # it between its first and last block (a run at normal priority once finished all 3 first).
    proc = subprocess.Popen(
        ["nice", "-n", "15", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not list((out / ".progress").glob("block-*.json")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((out / ".progress").glob("block-*.json")))
    assert 1 <= finished < 3, "killed mid-run"
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with 2 process(es)" in done.stdout
    assert rows(out) == rows(reference)


def test_stage_3_trains_on_the_pairs(reference, photos, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    out = tmp_path / "translator"
    argv = ["--config", str(REPO / "train/configs/translator-tiny.yaml"), "--real_data", str(photos)]
    argv += ["--anime_data", str(photos), "--paired_data", str(reference), "--output_dir", str(out)]
    argv += ["--max_train_steps", "2", "--checkpointing_steps", "2", "--sample_steps", "2"]
    try:
        load_script("train_translator").main(argv)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert (out / "translator" / "config.json").is_file()
    record = json.loads((out / "translator" / "training_config.json").read_text())
    assert record["steps"] == 2 and record["data"]["paired_data"] == str(reference)


def test_anime_only_writes_the_unpaired_anime_set(script, models, tmp_path):
    out = tmp_path / "anime"
    argv = args(models, "", out, anime_only="true", num_anime=3, block_size=2)
    assert run_in_process(script, argv) == 0
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == ["000000.png", "000001.png", "000002.png"]
    first = (out / "000000.png").read_bytes()
    with Image.open(out / "000000.png") as image:
        assert image.size == (32, 32)
    (out / "000000.png").unlink()  # resume: only the missing image is made, and it is the same
    for marker in (out / ".progress").glob("block-000000.json"):
        marker.unlink()
    assert run_in_process(script, argv) == 0
    assert (out / "000000.png").read_bytes() == first
    assert run_in_process(script, [*argv, "--num_anime=1"]) == 0  # fewer: the others go
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png"]


# ---------------------------------------------------------------- settings that cannot work


def write_config(folder, name, **values):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(values))


@pytest.fixture(scope="module")
def config_only(models, tmp_path_factory):
    """Model folders with configs and NO weights: a check that passes would fail at loading instead."""
    root = tmp_path_factory.mktemp("configs")
    model, controlnet = models
    for sub in ("model_index.json", "unet/config.json", "vae/config.json"):
        write_config(root / "model", sub, **json.loads((model / sub).read_text()))
    net = json.loads((controlnet / "config.json").read_text())
    write_config(root, "sd2-controlnet/config.json", **{**net, "cross_attention_dim": 1024})
    write_config(root, "xl-controlnet/config.json", **{**net, "addition_embed_type": "text_time"})
    write_config(root, "unet-only/config.json", _class_name="UNet2DConditionModel")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strength": 0}, "--strength 0.0: must lie in (0, 1]"),
        ({"strength": 1.5}, "--strength 1.5: must lie in (0, 1]"),
        ({"preset": "ghibli"}, "--preset ghibli: unknown; use one of shinkai, hosoda"),
        ({"photos": "EMPTY"}, "--photos"),  # a folder without images
        ({"controlnet": "CONFIGS/sd2-controlnet"}, "has cross_attention_dim 1024 but the UNet"),
        ({"controlnet": "CONFIGS/xl-controlnet"}, "is an SDXL ControlNet"),
        ({"controlnet": "CONFIGS/unet-only"}, "is a UNet2DConditionModel, not a ControlNetModel"),
        ({"resolution": 30}, "--resolution 30: the UNet of --model"),
        ({"scheduler": "heun"}, "--scheduler heun"),
    ],
)
def test_settings_that_cannot_work_fail_before_any_model_loads(script, config_only, photos, overrides, message):
    model = config_only / "model"
    values = {k: str(v).replace("CONFIGS", str(config_only)) for k, v in overrides.items()}
    if values.pop("photos", None) == "EMPTY":
        photos = config_only / "empty"
    argv = args((model, config_only / "no-such-controlnet"), photos, config_only / "never", **values)
    if "controlnet" not in values:
        argv = [a for a in argv if not a.startswith("--controlnet=")] + ["--controlnet=none"]
    with pytest.raises(ConfigError) as err:
        run_in_process(script, argv)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (config_only / "never").exists()


def test_resolution_error_names_a_size_that_works(script, config_only, photos):
    argv = args((config_only / "model", None), photos, config_only / "never", resolution=30, controlnet="none")
    with pytest.raises(ConfigError, match="use --resolution 32"):
        run_in_process(script, argv)


@pytest.mark.slow
def test_bad_setting_is_one_line_on_stderr_without_traceback(models, photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    argv = args(models, photos, tmp_path / "out", strength=2)
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "diffusion_pairs.py: error: --strength 2.0: must lie in (0, 1] (the share of the denoising redone; 0.4-0.7 "
        "keeps the photo's layout)"
    ]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- edge alignment


def test_edge_score_same_edges_one_unrelated_low():
    rng = np.random.default_rng(3)
    image = np.array(shapes_image(rng, 64, 64))
    assert edge_alignment(image, image) == 1.0
    assert edge_alignment(image, 255 - image) == 1.0  # inverted colours: the same edges
    shifted = np.roll(image, 1, axis=1)
    assert edge_alignment(image, shifted) > 0.9  # within the 2 px tolerance
    stripes_v = np.zeros((64, 64, 3), np.uint8)
    stripes_v[:, ::16] = 255
    stripes_h = np.zeros((64, 64, 3), np.uint8)
    stripes_h[::16] = 255
    assert edge_alignment(stripes_v, stripes_h) < 0.4  # crossings only
    assert edge_alignment(image, np.array(shapes_image(rng, 64, 64))) < 0.5
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert edge_alignment(flat, flat) == 1.0 and edge_alignment(image, flat) == 0.0
    # Hand-counted: 4 reference edge pixels, 2 candidate pixels of which 1 lies within 1 px.
    reference = np.zeros((8, 8), bool)
    reference[1, 1:5] = True
    candidate = np.zeros((8, 8), bool)
    candidate[2, 1] = candidate[6, 6] = True
    precision, recall = 1 / 2, 2 / 4  # (2,1) lies next to (1,1); (1,1) and (1,2) lie next to (2,1)
    assert edge_f_score(reference, candidate, tolerance=1) == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    assert canny(image).dtype == bool and canny(image).shape == (64, 64)


def test_tiny_model_is_the_same_for_a_seed(tmp_path):
    a, _ = save_tiny_stable_diffusion(tmp_path / "a")
    b, _ = save_tiny_stable_diffusion(tmp_path / "b")
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes()
    index = json.loads((a / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["tokenizer"] == ["transformers", "CLIPTokenizer"]


@pytest.fixture(scope="module")
def lora(models, tmp_path_factory):
    """A random LoRA of the tiny UNet, saved as diffusers saves trained LoRAs (safetensors + its keys)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(models[0] / "unet")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
        unet.add_adapter(config)
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


def test_lora_changes_the_style_and_scale_zero_leaves_it(script, models, photos, segmenter, reference, lora, tmp_path):
    styled, off = tmp_path / "styled", tmp_path / "off"
    assert run_in_process(script, args(models, photos, styled, segmenter, max_photos=2, lora=lora)) == 0
    assert run_in_process(script, args(models, photos, off, segmenter, max_photos=2, lora=lora, lora_scale=0)) == 0
    base = rows(reference)[:2]
    assert [r["anime"] for r in rows(styled)] != [r["anime"] for r in base]
    assert [r["anime"] for r in rows(off)] == [r["anime"] for r in base]
    assert f"| LoRA | `{lora}` |" in (styled / "README.md").read_text()


def test_publish_dataset_carries_the_card_with_models_licences_prompts_and_sources(reference, tmp_path):
    from scenimefy.hub.publish import publish_dataset

    result = publish_dataset(reference, "someone/hosoda-diffusion-pairs", dry_run_dir=tmp_path / "staged")
    assert "README.md" in result.files and any(f.startswith("data/train-b") for f in result.files)
    assert not any(f.startswith(".progress") for f in result.files)  # resume state stays home
    card = (tmp_path / "staged" / "README.md").read_text()
    for fact in ("diffusion checkpoint", "ControlNet", "hand-built test images", "Prompt: `", "Negative prompt: `"):
        assert fact in card
    assert "CreativeML OpenRAIL-M" in card and "S-Lab License does not apply" in card


def test_photos_from_a_datasets_folder_give_the_same_pairs(script, models, photos, segmenter, reference, tmp_path):
    import datasets

    files = sorted(photos.rglob("*.png"))[:2]
    table = datasets.Dataset.from_dict({"image": [str(f) for f in files]}).cast_column("image", datasets.Image())
    (tmp_path / "ds" / "data").mkdir(parents=True)
    table.to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    out = tmp_path / "pairs"
    assert run_in_process(script, args(models, tmp_path / "ds", out, segmenter)) == 0
    got = rows(out)
    assert [r["anime"] for r in got] == [r["anime"] for r in rows(reference)[:2]]
    assert [r["photo"] for r in got] == [f"{tmp_path / 'ds'}[train][{i}]" for i in range(2)]


def test_a_checkpoint_missing_offline_is_one_line_and_writes_nothing(script, photos, tmp_path):
    from scenimefy.hub.download import WeightsUnavailableError

    argv = args(("someone/not-cached", None), photos, tmp_path / "out", controlnet="none")
    with pytest.raises(WeightsUnavailableError, match="someone/not-cached' could not be loaded \\(offline") as err:
        run_in_process(script, argv)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_a_pair_is_reproduced_by_diffusers_from_its_row(models, photos, reference, tmp_path):
    """The documented recipe: the stored photo, its canny edges, the row's prompts and settings and
    ``torch.Generator().manual_seed(seed)`` through diffusers give the stored anime image."""
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetImg2ImgPipeline

    row = load_pairs(reference, tmp_path)[1]
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        models[0], controlnet=ControlNetModel.from_pretrained(models[1]), safety_checker=None
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    edges = canny(np.array(row["real"])).astype(np.uint8) * 255
    image = pipe(
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        image=row["real"],
        control_image=Image.fromarray(np.repeat(edges[..., None], 3, axis=2)),
        strength=row["strength"],
        guidance_scale=row["guidance_scale"],
        num_inference_steps=row["num_inference_steps"],
        controlnet_conditioning_scale=row["controlnet_scale"],
        generator=torch.Generator().manual_seed(row["seed"]),
        height=32,
        width=32,
    ).images[0]
    diff = np.abs(np.array(image).astype(int) - np.array(row["anime"]).astype(int))
    assert diff.max() <= 1  # batch of 1 here, of 2 in the run: float rounding may move a level
