"""The style registry learns styles from published Hub repos and a styles index, offline."""

import json
import time

import numpy as np
import pytest
from huggingface_hub import constants

from scenimefy.cli import main
from scenimefy.hub import styles
from scenimefy.hub.download import WeightsUnavailableError
from scenimefy.hub.publish import publish_translator
from scenimefy.inference.pipeline import ScenimefyPipeline
from tests.support.fixtures import fill_hf_cache, gradient, tiny_translator


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty Hub cache, no user config, no overrides."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("SCENIMEFY_CACHE", str(tmp_path / "sc"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(styles.INDEX_ENV, raising=False)
    for name in ("HOSODA", "GHIBLI", "SHINKAI", "SHINKAI_LITE"):
        monkeypatch.delenv(f"SCENIMEFY_STYLE_{name}", raising=False)


def published(tmp_path, repo_id, seed, name="pub", **kwargs):
    """Publish a tiny translator (dry run) and put the files in the Hub cache as ``repo_id``."""
    tiny = tiny_translator(seed)
    tiny.save_pretrained(tmp_path / f"{name}-src")
    result = publish_translator(tmp_path / f"{name}-src", repo_id, dry_run_dir=tmp_path / name, **kwargs)
    fill_hf_cache(tmp_path / "hf", repo_id, {f: tmp_path / name / f for f in result.files})
    return tiny


def stylize(translator):
    return ScenimefyPipeline(translator)(gradient(24, 20), output_type="np")


def test_published_hosoda_appears_and_loads_without_code_changes(tmp_path, capsys):
    assert styles.style_status("hosoda") == "needs weights"
    tiny = published(tmp_path, styles.HOSODA_REPO_ID, seed=4, style="hosoda")
    assert styles.style_status("hosoda") == "ready"
    pipe = ScenimefyPipeline.from_pretrained(style="hosoda")
    np.testing.assert_array_equal(pipe(gradient(24, 20), output_type="np"), stylize(tiny))
    assert main(["styles"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("hosoda"))
    assert "ready" in line and styles.HOSODA_REPO_ID in line


def test_shinkai_lite_loads_as_soon_as_published_and_styles_names_the_variant(tmp_path, capsys):
    assert styles.get_style("shinkai").lite == "shinkai-lite"
    assert styles.style_status("shinkai-lite") == "needs weights"
    assert main(["styles"]) == 0
    listing = capsys.readouterr().out.splitlines()
    shinkai = next(row for row in listing if row.startswith("shinkai "))
    assert "Fast variant: shinkai-lite (needs weights)" in shinkai
    tiny = published(tmp_path, styles.SHINKAI_LITE_REPO_ID, seed=5, style="shinkai-lite")
    assert styles.style_status("shinkai-lite") == "ready"
    pipe = ScenimefyPipeline.from_pretrained(style="shinkai-lite")
    np.testing.assert_array_equal(pipe(gradient(24, 20), output_type="np"), stylize(tiny))
    assert main(["styles"]) == 0
    lite = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("shinkai-lite"))
    assert "ready" in lite and "Fast variant of shinkai" in lite


def test_offline_missing_published_style_fails_fast_with_instructions():
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        ScenimefyPipeline.from_pretrained(style="hosoda")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert styles.HOSODA_REPO_ID in message and "HF_HUB_OFFLINE" in message
    assert "SCENIMEFY_STYLE_HOSODA" in message and "--weights" in message and "no public weights" in message


def test_env_override_wins_over_the_published_repo(tmp_path, monkeypatch):
    published(tmp_path, styles.HOSODA_REPO_ID, seed=4)
    other = tiny_translator(9)
    other.save_pretrained(tmp_path / "mine")
    monkeypatch.setenv("SCENIMEFY_STYLE_HOSODA", str(tmp_path / "mine"))
    assert styles.resolve_style("hosoda") == (str(tmp_path / "mine"), None)
    np.testing.assert_array_equal(
        ScenimefyPipeline.from_pretrained(style="hosoda")(gradient(24, 20), output_type="np"), stylize(other)
    )


def test_local_index_adds_a_style_and_repoints_a_builtin(tmp_path, monkeypatch, capsys):
    index = tmp_path / "config" / "scenimefy" / "styles.json"  # the default location
    index.parent.mkdir(parents=True)
    index.write_text(
        json.dumps(
            {
                "styles": [
                    {
                        "name": "ghibli",
                        "title": "Studio Ghibli",
                        "repo_id": "someone/ghibli-translator",
                        "subfolder": "ghibli",
                    },
                    {"name": "hosoda", "repo_id": "me/my-hosoda"},
                ]
            }
        )
    )
    assert styles.index_source() == str(index)
    assert {"shinkai", "hosoda", "ghibli"} <= set(styles.styles())
    assert styles.get_style("ghibli").title == "Studio Ghibli"
    assert styles.style_status("ghibli") == "needs weights"
    with pytest.raises(WeightsUnavailableError, match="someone/ghibli-translator"):
        ScenimefyPipeline.from_pretrained(style="ghibli")
    # Publishing into a subfolder of the index's repo makes it ready.
    tiny = tiny_translator(2)
    tiny.save_pretrained(tmp_path / "g" / "ghibli")
    fill_hf_cache(
        tmp_path / "hf",
        "someone/ghibli-translator",
        {f"ghibli/{p.name}": p for p in (tmp_path / "g" / "ghibli").iterdir()},
    )
    assert styles.style_status("ghibli") == "ready"
    np.testing.assert_array_equal(
        ScenimefyPipeline.from_pretrained("ghibli")(gradient(24, 20), output_type="np"), stylize(tiny)
    )
    # The built-in hosoda now points at the index's repo.
    assert styles.get_style("hosoda").repo_id == "me/my-hosoda" and styles.get_style("hosoda").title == "Mamoru Hosoda"
    assert main(["styles"]) == 0
    out = capsys.readouterr().out
    assert "ghibli" in out and "Studio Ghibli" in out and "hf://me/my-hosoda" in out and str(index) in out


def test_hub_index_from_the_cache(tmp_path, monkeypatch):
    (tmp_path / "index.json").write_text(
        json.dumps({"styles": [{"name": "ghibli", "repo_id": "someone/ghibli-translator"}]})
    )
    fill_hf_cache(tmp_path / "hf", "scenimefy/styles", {"styles.json": tmp_path / "index.json"}, "dataset")
    monkeypatch.setenv(styles.INDEX_ENV, "hf://datasets/scenimefy/styles/styles.json")
    assert styles.get_style("ghibli").repo_id == "someone/ghibli-translator"
    tiny = published(tmp_path, "someone/ghibli-translator", seed=6)
    assert styles.style_status("ghibli") == "ready"
    np.testing.assert_array_equal(
        ScenimefyPipeline.from_pretrained(style="ghibli")(gradient(24, 20), output_type="np"), stylize(tiny)
    )


def test_broken_or_unreachable_index_warns_and_keeps_the_builtins(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"styles": [{"name": "x", "colour": "red"}]}')
    monkeypatch.setenv(styles.INDEX_ENV, str(bad))
    with pytest.warns(UserWarning, match="unknown keys"):
        assert set(styles.styles()) == {"shinkai", "shinkai-lite", "hosoda"}
    monkeypatch.setenv(styles.INDEX_ENV, "hf://someone/absent-index/styles.json")
    start = time.monotonic()
    with pytest.warns(UserWarning, match="ignored"):
        assert "shinkai" in styles.styles()
    assert time.monotonic() - start < 5
    monkeypatch.setenv(styles.INDEX_ENV, "")  # explicitly no index
    assert styles.index_source() is None


def test_unknown_style_lists_index_styles(tmp_path, monkeypatch):
    index = tmp_path / "i.json"
    index.write_text(json.dumps([{"name": "ghibli", "repo_id": "someone/ghibli-translator"}]))  # a bare list works too
    monkeypatch.setenv(styles.INDEX_ENV, str(index))
    with pytest.raises(KeyError, match="ghibli, hosoda, shinkai"):
        styles.get_style("pixar")
