"""The README's training table walked as a user would: the commands of docs/quickstart-training.md
(the paper's three stages, the distilled student of stage 4, publishing).

The fenced ``bash`` blocks of the page run verbatim, in order, in one shell (the real
``accelerate launch`` of each script, ``scenimefy publish``), from a checkout-like folder whose
``train/`` is this repository's and whose ``../shared`` is the shared test material; then the
page's ``python`` block loads the published folder and the student through the pipeline and the style
registry. Every stage uses its tiny preset, offline.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.support.paths import REPO, SAMPLES, SHARED

DOC = REPO / "docs" / "quickstart-training.md"
MARK = "__SCENIMEFY_BLOCK_DONE__"
#: The page's second part: the diffusion-pairs branch, run after the page's data-folder block.
BRANCH = "## Another branch: pairs from photos by a diffusion model"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a markdown page, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def checkout(tmp_path):
    """A folder laid out like a checkout beside ../shared: train/ is the repository's."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "train").symlink_to(REPO / "train")
    (tmp_path / "shared").symlink_to(SHARED)
    return root


def user_env(tmp_path) -> dict[str, str]:
    venv_bin = os.path.dirname(sys.executable)  # accelerate, scenimefy
    return {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "SCENIMEFY_CACHE": str(tmp_path / "scenimefy-cache"),
    }


@pytest.mark.slow
def test_quickstart_commands_train_publish_and_stylize(checkout, tmp_path):
    blocks = fenced_blocks(DOC.read_text().split(BRANCH)[0])
    shell = [code for lang, code in blocks if lang == "bash"]
    python = [code for lang, code in blocks if lang == "python"]
    assert len(shell) == 7 and len(python) == 1, "the page: data folders, 5 stages, publish; one Python block"
    stages = [
        "train_stylegan.py",
        "finetune_stylegan.py",
        "generate_pairs.py",
        "train_translator.py",
        "distill_translator.py",
    ]
    for code, script in zip(shell[1:6], stages):
        assert f"accelerate launch train/{script} --config train/configs/" in code and "-tiny.yaml" in code
    assert shell[6].startswith("scenimefy publish translator") and "--dry-run" in shell[6]

    # One shell, as a user pastes the blocks one after the other; a marker times each block.
    began = time.time()
    script = "set -euo pipefail\n" + "".join(f"{code}\necho {MARK} $(date +%s.%N) >&2\n" for code in shell)
    start = time.time()
    done = subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=user_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "Traceback" not in done.stderr
    marks = [float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith(MARK)]
    seconds = [b - a for a, b in zip([start, *marks], marks)][1:6]
    timings = dict(zip(stages, (round(s, 1) for s in seconds)))
    print(f"\nstage seconds: {timings}")
    assert all(s < 60 for s in seconds), timings  # each tiny preset: under a minute on this CPU

    out = checkout / "outputs" / "tiny"
    # Stage 1: trained from scratch (no S-Lab licence), then fine-tuned with random priors, as the cards say.
    g_s = (out / "stylegan" / "README.md").read_text()
    assert "license: other" in g_s and "non-commercial" not in g_s and "S-Lab License does not apply" in g_s
    g_t = (out / "stylegan-anime" / "README.md").read_text()
    assert "randomly initialised" in g_t and "random weights" in g_t and "openai" not in g_t
    # Stage 2: a dataset of exactly the preset's pairs.
    card = (out / "pairs" / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["dataset_info"]["splits"][0]["num_examples"] == 8
    # Stage 3: the final folder holds its card and training record; publish used them unasked.
    translator = out / "translator" / "translator"
    assert {"README.md", "training_config.json", "config.json"} <= {p.name for p in translator.iterdir()}
    record = json.loads((out / "release" / "training_config.json").read_text())
    assert record["script"] == "train/train_translator.py" and record["steps"] == 12
    release = (out / "release" / "README.md").read_text()
    assert 'ScenimefyPipeline.from_pretrained("you/tiny-translator")' in release and "## Training" in release
    assert "paired_data" in release and "S-Lab License does not apply" in release
    # Stage 4: the student of that translator, a lite translator whose card names its teacher.
    student = out / "lite" / "student"
    assert json.loads((student / "config.json").read_text())["_class_name"] == "ScenimefyLiteTranslator"
    record = json.loads((student / "training_config.json").read_text())
    assert record["script"] == "train/distill_translator.py" and record["data"]["teacher"].endswith("translator")
    assert "S-Lab License does not apply" in (student / "README.md").read_text()

    # The page's Python block: the pipeline and the style registry load the released folder.
    start = time.time()
    used = subprocess.run(
        [sys.executable, "-"],
        input=python[0],
        cwd=checkout,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert used.returncode == 0, used.stderr[-3000:]
    timings["python block"] = round(time.time() - start, 1)
    total = time.time() - began
    print(f"timings: {timings}, whole walk {total:.0f} s")
    photo = Image.open(SAMPLES / "space_0.jpg")
    for name in ("anime.png", "anime-hosoda.png", "anime-lite.png"):
        with Image.open(out / name) as image:
            image.load()
            assert image.size == photo.size and image.mode == "RGB"


@pytest.mark.slow
def test_quickstart_diffusion_branch_photos_to_pairs_to_translator_to_stylized(checkout, tmp_path):
    """photos -> diffusion pairs (+ selection) -> the anime set -> stage 3 tiny -> stylize, verbatim."""
    main, branch = DOC.read_text().split(BRANCH)
    data = [code for lang, code in fenced_blocks(main) if lang == "bash"][0]
    shell = [code for lang, code in fenced_blocks(branch.split("## What to try next")[0]) if lang == "bash"]
    assert len(shell) == 4 and "diffusion-pairs-tiny.yaml" in shell[0] and "--anime_only true" in shell[1]
    assert "--paired_data outputs/tiny/diffusion-pairs" in shell[2] and shell[3].startswith("scenimefy stylize")
    script = "set -euo pipefail\n" + "".join(f"{code}\necho {MARK} $(date +%s.%N) >&2\n" for code in [data, *shell])
    start = time.time()
    done = subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=user_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "Traceback" not in done.stderr
    marks = [float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith(MARK)]
    seconds = [round(b - a, 1) for a, b in zip([start, *marks], marks)][1:]
    print(f"\nbranch seconds (pairs, anime, translator, stylize): {seconds}")

    out = checkout / "outputs" / "tiny"
    photos = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    card = (out / "diffusion-pairs" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["dataset_info"]["splits"][0]["num_examples"] == min(8, len(photos))
    assert "## Pairs report" in card and "Mamoru Hosoda" in card  # the preset's prompt, named in the card
    assert sorted(p.name for p in (out / "diffusion-anime").glob("*.png")) == [f"{i:06d}.png" for i in range(8)]
    record = json.loads((out / "translator-diffusion" / "translator" / "training_config.json").read_text())
    assert record["data"]["paired_data"] == "outputs/tiny/diffusion-pairs"
    for name in photos:
        with Image.open(out / "anime-diffusion" / (Path(name).stem + ".png")) as image, Image.open(SAMPLES / name) as p:
            assert image.size == p.size
