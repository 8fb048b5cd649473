"""The cards of trained models say what really happened, with the licence that really applies."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from scenimefy.hub import cards
from scenimefy.hub.publish import publish_stylegan2
from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.training.config import parse_config
from scenimefy.training.stylegan import write_stylegan_folder
from tests.support.scripts import load_script


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n", 2)[1])


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def stylegan_run(folder, seed=0):
    torch.manual_seed(seed)
    StyleGAN2Generator(size=8, style_dim=4, n_mlp=1, channel_max=4).save_pretrained(folder / "generator")
    StyleGAN2Discriminator(size=8, channel_max=4).save_pretrained(folder / "discriminator")


@pytest.fixture
def from_scratch(tmp_path, monkeypatch):
    """A StyleGAN2 run folder as train_stylegan.py leaves it, written from its real config."""
    monkeypatch.chdir(tmp_path)
    stylegan_run(tmp_path / "gs")
    config = parse_config(load_script("train_stylegan").TrainStyleGANConfig, ["--train_data", "photos"])
    write_stylegan_folder(
        "gs",
        script="train/train_stylegan.py",
        title="G_s",
        description="Trained from scratch.",
        config=config,
        steps=12,
        data={"train_data": "photos"},
        sources={},
        notes=[],
    )
    return tmp_path / "gs"


def finetuned(source: str, *flags: str) -> str:
    """G_t's card as finetune_stylegan.py writes it, from ``source`` with ``flags``."""
    finetune = load_script("finetune_stylegan")
    config = parse_config(finetune.FinetuneStyleGANConfig, ["--source_model", source, "--train_data", "anime", *flags])
    stylegan_run(Path("gt"), seed=1)
    write_stylegan_folder(
        "gt",
        script="train/finetune_stylegan.py",
        title="G_t",
        description="",
        config=config,
        steps=10,
        data={"train_data": "anime"},
        sources={"source_model": source},
        notes=finetune.card_notes(config),
    )
    return open("gt/README.md").read()


def test_trained_from_scratch_is_not_s_lab_and_its_card_runs(from_scratch):
    card = (from_scratch / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] == "other" and "license_name" not in meta
    assert "S-Lab License does not apply" in card and "non-commercial" not in card
    assert "derived from" not in card and "trained from scratch" in card and "`train_data`: `photos`" in card
    record = json.loads((from_scratch / "training_config.json").read_text())
    assert record["uses_authors_weights"] is False and record["config"]["train_data"] == "photos"
    # The usage snippet runs as written (it imports torch itself).
    (snippet,) = python_blocks(card)
    assert snippet.startswith("import torch\n")
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["images"].shape == (4, 3, 8, 8)
    # Publishing needs no path: the card is rebuilt for the repo with the record's licence.
    result = publish_stylegan2(from_scratch, "me/gs", dry_run_dir="dry")
    assert "training_config.json" in result.files
    published = open("dry/README.md").read()
    assert front_matter(published)["license"] == "other" and "non-commercial" not in published
    assert 'StyleGAN2Generator.from_pretrained("me/gs", subfolder="generator")' in published


def test_random_priors_are_stated_and_the_licence_follows_the_source(from_scratch, tmp_path):
    card = finetuned("gs", "--random_priors", "--clip_model", "tiny")
    assert "CLIP (`tiny`) and LPIPS (`vgg`) were randomly initialised" in card and "openai" not in card
    assert front_matter(card)["license"] == "other"  # derived from our own from-scratch G_s
    assert "Derived from `gs` (source_model)" in card and "S-Lab License does not apply" in card
    # A converted folder (no card, no record) or the authors' .pt: derived from their release, S-Lab.
    stylegan_run(tmp_path / "converted")
    card = finetuned("converted")
    assert front_matter(card)["license_name"] == "s-lab-license-1.0" and "non-commercial" in card
    assert "not recorded, so it is treated as derived from the authors' release" in card
    assert "Priors: CLIP `ViT-B-32` / `openai`, LPIPS `vgg`." in card
    assert cards.inherited_license({"source_model": "lhq-220000.pt"})[0] == cards.S_LAB
    # An explicit licence wins over auto.
    card = finetuned("converted", "--hub_license", "apache-2.0")
    assert front_matter(card)["license"] == "apache-2.0" and "S-Lab License 1.0" in card  # the caveat stays
