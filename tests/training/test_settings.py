"""Settings of the training scripts: the generated --help, the command-line syntax, the presets."""

import dataclasses
import typing

import pytest

from scenimefy.training.config import ConfigError, config_from_dict, field_docs, format_value, parse_config, type_name
from tests.support.paths import REPO
from tests.support.scripts import load_script

SCRIPTS = {
    "train_stylegan": "TrainStyleGANConfig",
    "finetune_stylegan": "FinetuneStyleGANConfig",
    "generate_pairs": "GeneratePairsConfig",
    "train_translator": "TrainTranslatorConfig",
    "diffusion_pairs": "DiffusionPairsConfig",
}
PRESETS = {
    "train_stylegan": "stylegan-tiny.yaml",
    "finetune_stylegan": "finetune-tiny.yaml",
    "generate_pairs": "pairs-tiny.yaml",
    "train_translator": "translator-tiny.yaml",
    "diffusion_pairs": "diffusion-pairs-tiny.yaml",
}


def config_class(script: str) -> type:
    return getattr(load_script(script), SCRIPTS[script])


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_setting_with_type_default_and_meaning(script, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        load_script(script).main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps; compare with single spaces
    cls = config_class(script)
    hints = typing.get_type_hints(cls)
    docs = {d.name: d for d in field_docs(cls)}
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        doc = docs[field.name]
        assert doc.help, f"{script}: --{field.name} has no one-line meaning"
        metavar = type_name(hints[field.name])
        flag = f"--{field.name} [{metavar}]" if metavar == "BOOL" else f"--{field.name} {metavar}"
        assert flag in text, f"{script}: {flag} missing from --help"
        assert f"{' '.join(doc.help.split())} (default: {format_value(default)})" in text, field.name
    assert "--config FILE.yaml" in text and "Lists: comma-separated (--nce_layers 0,4,8,12,16)" in text
    assert list(tmp_path.iterdir()) == []  # --help creates nothing


def test_types_and_defaults_read_as_typed():
    assert type_name(int) == "INT" and type_name(bool) == "BOOL" and type_name(int | None) == "INT|none"
    assert type_name(tuple[int, ...]) == "INT,INT,..." and type_name(str) == "STR"
    assert [format_value(v) for v in (None, True, (0, 4, 13), "", 0.5)] == ["none", "true", "0,4,13", '""', "0.5"]
    docs = {d.name: d for d in field_docs(config_class("train_translator"))}
    assert docs["nce_layers"].type == "INT,INT,..." and docs["nce_layers"].default == "0,4,8,12,16"
    assert docs["lambda_style"].section.startswith("Losses") and docs["real_data"].section.startswith("Data")


def test_command_line_syntax():
    cls = config_class("train_translator")
    for flags in (["--nce_layers", "0,4,8,12,13"], ["--nce_layers", "[0, 4, 8, 12, 13]"], ["--nce-layers=0,4,8,12,13"]):
        assert parse_config(cls, flags).nce_layers == (0, 4, 8, 12, 13)
    config = parse_config(cls, ["--flip", "false", "--push_to_hub", "--seed", "none", "--epochs=3", "--real_data="])
    assert (config.flip, config.push_to_hub, config.seed, config.epochs, config.real_data) == (False, True, None, 3, "")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) --lamda_style \(did you mean --lambda_style\?\)"):
        parse_config(cls, ["--lamda_style", "1"])
    with pytest.raises(ConfigError, match="--epochs: expected int, got 'two'"):
        parse_config(cls, ["--epochs", "two"])
    with pytest.raises(ConfigError, match="unexpected argument 'stray'"):
        parse_config(cls, ["stray"])
    with pytest.raises(ConfigError, match="nothing to train"):  # the dataclass's own refusal, as a ConfigError
        config_from_dict(cls, {"supervised": False, "unsupervised": False})


@pytest.mark.parametrize("script", SCRIPTS)
def test_tiny_presets_parse_and_chain(script):
    config = parse_config(config_class(script), ["--config", str(REPO / "train" / "configs" / PRESETS[script])])
    assert config.output_dir.startswith("outputs/tiny/")
    chain = {
        "finetune_stylegan": ("source_model", "outputs/tiny/stylegan"),
        "generate_pairs": ("target", "outputs/tiny/stylegan-anime"),
        "train_translator": ("paired_data", "outputs/tiny/pairs"),
    }
    if script in chain:
        name, value = chain[script]
        assert getattr(config, name) == value  # each stage reads the previous stage's output_dir
    if script == "finetune_stylegan":
        assert config.random_priors and config.clip_model == "tiny"
    if script in ("generate_pairs", "diffusion_pairs"):
        assert config.segmenter == "tiny" and config.max_lbce > 5.02 and config.min_classes == 0
    if script == "diffusion_pairs":
        assert config.model == config.controlnet == "tiny"
