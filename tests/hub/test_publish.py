"""Publishing: dry-run folders file by file, model cards, loading what was published, tokens."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import constants
from safetensors.torch import save_file

from scenimefy.cli import main
from scenimefy.hub.publish import PublishError, publish_dataset, publish_stylegan2, publish_translator
from scenimefy.inference.pipeline import ScenimefyPipeline
from tests.support.fixtures import fill_hf_cache, gradient, tiny_translator

SECRET = "hf_scenimefyTESTtoken0123456789abcdef"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


@pytest.fixture
def translator_dir(tmp_path):
    tiny = tiny_translator(7)
    folder = tmp_path / "run" / "translator"
    tiny.save_pretrained(folder)
    (folder / "notes.txt").write_text("scratch file that must not be uploaded")
    (tmp_path / "run" / "training_config.yaml").write_text("epochs: 20\nlambda_vgg: 0.2\n")
    return folder


def test_translator_dry_run_file_by_file(translator_dir, tmp_path):
    metrics = {"FID": 48.922, "KID": 0.0123, "L_BCE": 4.39}
    result = publish_translator(
        translator_dir, "someone/hosoda-translator", style="hosoda", metrics=metrics, dry_run_dir=tmp_path / "dry"
    )
    dry = tmp_path / "dry"
    expected = [
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "metrics.json",
        "training_config.yaml",
    ]
    assert result.files == expected and result.url is None and result.folder == dry
    assert sorted(p.name for p in dry.iterdir()) == expected
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        assert (dry / name).read_bytes() == (translator_dir / name).read_bytes()
    assert json.loads((dry / "metrics.json").read_text()) == metrics
    assert (
        dry / "training_config.yaml"
    ).read_text() == "epochs: 20\nlambda_vgg: 0.2\n"  # picked up from the run folder

    card = (dry / "README.md").read_text()
    meta = front_matter(card)
    assert (
        meta["license"] == "other"
        and meta["license_name"] == "s-lab-license-1.0"
        and "LICENSE.md" in meta["license_link"]
    )
    assert meta["library_name"] == "scenimefy" and meta["pipeline_tag"] == "image-to-image"
    assert {"scenimefy", "anime", "hosoda"} <= set(meta["tags"])
    assert "# Scenimefy translator: Mamoru Hosoda style" in card
    assert 'ScenimefyPipeline.from_pretrained("someone/hosoda-translator")' in card
    assert "SCENIMEFY_STYLE_HOSODA=someone/hosoda-translator" in card
    assert "| Metric | Value |" in card and "| FID | 48.92 |" in card and "| L_BCE | 4.39 |" in card
    assert "non-commercial" in card and "@inproceedings{jiang2023scenimefy" in card and "2308.12968" in card
    assert "notes" not in " ".join(result.files)


def test_dry_run_folder_and_hub_cache_load_the_same_translator(translator_dir, tmp_path, monkeypatch):
    publish_translator(translator_dir, "someone/tiny-translator", dry_run_dir=tmp_path / "dry")
    cache = tmp_path / "hf"
    fill_hf_cache(cache, "someone/tiny-translator", {p.name: p for p in (tmp_path / "dry").iterdir()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # HF_HUB_OFFLINE=1 (conftest)
    from_folder = ScenimefyPipeline.from_pretrained(tmp_path / "dry")(gradient(28, 20), output_type="np")
    from_hub = ScenimefyPipeline.from_pretrained("someone/tiny-translator")(gradient(28, 20), output_type="np")
    original = ScenimefyPipeline(tiny_translator(7))(gradient(28, 20), output_type="np")
    np.testing.assert_array_equal(from_folder, from_hub)
    np.testing.assert_array_equal(from_folder, original)


def test_metrics_from_evaluate_json_and_explicit_license(translator_dir, tmp_path):
    rows = [{"method": "Ours", "images": 10, "fid": 48.92, "kid": 0.012, "kid_std": 0.001, "lbce": 4.39}]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    publish_translator(
        translator_dir,
        "me/x",
        metrics=tmp_path / "eval.json",
        license="apache-2.0",
        training_config={"epochs": 2},
        dry_run_dir=tmp_path / "dry",
    )
    card = (tmp_path / "dry" / "README.md").read_text()
    assert front_matter(card)["license"] == "apache-2.0" and "S-Lab License 1.0" in card  # the caveat stays
    assert "| Ours | 48.92 | 12.00 ± 1.00 | 4.3900 |" in card
    assert json.loads((tmp_path / "dry" / "training_config.json").read_text()) == {"epochs": 2}


def test_a_lite_translator_is_published_and_described_as_lite(tmp_path):
    from scenimefy.models.lite import ScenimefyLiteTranslator

    torch.manual_seed(0)
    lite = ScenimefyLiteTranslator(channels=(4, 8, 16), n_blocks=2).eval()
    lite.save_pretrained(tmp_path / "student")
    result = publish_translator(tmp_path / "student", "me/lite", style="shinkai-lite", dry_run_dir=tmp_path / "out")
    card = (result.folder / "README.md").read_text()
    assert "Scenimefy-Lite" in card and "widths (4, 8, 16), 2 residual blocks" in card
    assert "scenimefy-lite" in front_matter(card)["tags"]
    pipe = ScenimefyPipeline.from_pretrained(result.folder)
    assert type(pipe.translator) is ScenimefyLiteTranslator


def test_stylegan2_folders_are_published_generically(tmp_path):
    run = tmp_path / "stylegan"
    for sub, cls in (("generator", "StyleGAN2Generator"), ("discriminator", "StyleGAN2Discriminator")):
        (run / sub).mkdir(parents=True)
        save_file({"w": torch.arange(6.0).reshape(2, 3)}, run / sub / "diffusion_pytorch_model.safetensors")
        (run / sub / "config.json").write_text(json.dumps({"_class_name": cls, "size": 32}))
    (run / "checkpoint-100").mkdir()  # accelerate state: not part of the release
    (run / "checkpoint-100" / "optimizer.bin").write_bytes(b"x")
    result = publish_stylegan2(run, "someone/lhq-stylegan2", dry_run_dir=tmp_path / "dry")
    assert result.files == [
        "README.md",
        "discriminator/config.json",
        "discriminator/diffusion_pytorch_model.safetensors",
        "generator/config.json",
        "generator/diffusion_pytorch_model.safetensors",
    ]
    for name in result.files[1:]:
        assert (tmp_path / "dry" / name).read_bytes() == (run / name).read_bytes()
    card = (tmp_path / "dry" / "README.md").read_text()
    meta = front_matter(card)
    assert meta["pipeline_tag"] == "unconditional-image-generation" and "stylegan2" in meta["tags"]
    assert meta["license_name"] == "s-lab-license-1.0"
    assert 'generator = StyleGAN2Generator.from_pretrained("someone/lhq-stylegan2", subfolder="generator")' in card
    # one network in a plain folder
    single = publish_stylegan2(run / "generator", "someone/g", dry_run_dir=tmp_path / "dry2")
    assert single.files == ["README.md", "config.json", "diffusion_pytorch_model.safetensors"]
    (run / "generator" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PublishError, match="safetensors"):
        publish_stylegan2(run, "someone/lhq-stylegan2", dry_run_dir=tmp_path / "dry3")
    assert not (tmp_path / "dry3").exists()  # nothing half-written


def test_dataset_keeps_its_card_and_files_and_film_frames_stay_private(tmp_path):
    ds = tmp_path / "ds"
    (ds / "train" / "a").mkdir(parents=True)
    (ds / "train" / "a" / "x.png").write_bytes(b"png")
    (ds / "train" / "metadata.jsonl").write_text('{"file_name": "a/x.png"}\n')
    (ds / "README.md").write_text("---\nlicense: other\nscenimefy_redistributable: false\n---\n# frames\n")
    with pytest.raises(PublishError, match="private"):
        publish_dataset(ds, "me/frames", dry_run_dir=tmp_path / "dry")
    result = publish_dataset(ds, "me/frames", private=True, dry_run_dir=tmp_path / "dry")
    assert result.repo_type == "dataset" and result.files == ["README.md", "train/a/x.png", "train/metadata.jsonl"]
    assert (tmp_path / "dry" / "README.md").read_text() == (ds / "README.md").read_text()
    (ds / "README.md").unlink()
    publish_dataset(ds, "me/photos", dry_run_dir=tmp_path / "dry2")
    assert front_matter((tmp_path / "dry2" / "README.md").read_text())["license"] == "other"


def test_bad_inputs_are_clear_errors(translator_dir, tmp_path):
    with pytest.raises(PublishError, match="not a translator folder"):
        publish_translator(tmp_path, "me/x", dry_run_dir=tmp_path / "d1")
    with pytest.raises(PublishError, match="owner/name"):
        publish_translator(translator_dir, "just-a-name", dry_run_dir=tmp_path / "d2")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(PublishError, match="not an empty folder"):
        publish_translator(translator_dir, "me/x", dry_run_dir=tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


class FakeHub(BaseHTTPRequestHandler):
    """A Hub endpoint on 127.0.0.1 that refuses every request as unauthorised, and remembers them."""

    seen: list = []

    def do_POST(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST

    def log_message(self, *args):
        pass


def test_token_is_used_but_never_printed_logged_or_written(translator_dir, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    # Dry run through the CLI.
    assert (
        main(
            [
                "publish",
                "translator",
                str(translator_dir),
                "me/tiny",
                "--dry-run",
                str(tmp_path / "dry"),
                "--metric",
                "FID=50.1",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "dry run: 5 files" in out.out and "nothing uploaded" in out.out
    for path in (tmp_path / "dry").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()
    # A real upload against a local endpoint that refuses the token.
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeHub.seen.clear()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        start = time.monotonic()
        rc = main(["publish", "translator", str(translator_dir), "me/tiny"])
        assert time.monotonic() - start < 30
    finally:
        server.shutdown()
    err = capsys.readouterr()
    assert rc == 2 and "upload to model me/tiny failed" in err.err and "Traceback" not in err.err
    assert ("/api/repos/create", f"Bearer {SECRET}") in FakeHub.seen  # the token from HF_TOKEN was sent
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (out.out, out.err, err.out, err.err, logged):
        assert SECRET not in text


def test_upload_offline_or_unreachable_fails_fast(translator_dir, monkeypatch, capsys):
    assert main(["publish", "translator", str(translator_dir), "me/tiny"]) == 2  # HF_HUB_OFFLINE=1
    assert "--dry-run" in capsys.readouterr().err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    assert main(["publish", "translator", str(translator_dir), "me/tiny"]) == 2
    assert time.monotonic() - start < 5 and "cannot reach" in capsys.readouterr().err
