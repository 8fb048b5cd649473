"""ONNX: export of the full and the lite translator with dynamic sizes, checked with the real
onnxruntime; the pipeline's onnx backend; ``scenimefy export`` and its one-line errors."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from scenimefy.cli import main
from scenimefy.inference import onnx
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.models.lite import ScenimefyLiteTranslator
from scenimefy.models.loading import size_multiple
from scenimefy.models.translator import ScenimefyTranslator
from tests.support.paths import REPO, SAMPLES


def randomised(model):
    for p in model.parameters():
        p.data.normal_(0, 0.2)  # larger than the default init: differences would show
    return model.eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        # the full translator (tiny config): blur-pool (grouped Conv), blur upsampling (grouped ConvTranspose)
        "full": randomised(ScenimefyTranslator(ngf=4, n_blocks=1)),
        # the default lite topology, narrower
        "lite": randomised(ScenimefyLiteTranslator(channels=(4, 8, 16), n_blocks=2)),
        # three downsamplings (multiples of 8), a 3x3 head, transposed-conv upsampling
        "lite-8": randomised(
            ScenimefyLiteTranslator(channels=(4, 8, 8, 16), n_blocks=1, head_kernel=3, antialias_up=False)
        ),
    }


@pytest.fixture(scope="module")
def lite_folder(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lite")
    models["lite"].save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["full", "lite", "lite-8"])
def test_export_is_dynamic_and_matches_pytorch_fp32(models, name, tmp_path):
    model = models[name]
    m = size_multiple(model)
    path = onnx.export_onnx(model, tmp_path / f"{name}.onnx", example_size=(9 * m, 8 * m))
    runtime = onnx.OnnxTranslator(path, threads=1)
    assert runtime.size_multiple == m and runtime.class_name == type(model).__name__
    assert runtime.fixed_size is None
    torch.manual_seed(1)
    # two sizes and a batch the export never saw, non-square both ways
    for batch, h, w in [(2, 5 * m, 12 * m), (1, 14 * m, 3 * m)]:
        x = torch.rand(batch, 3, h, w) * 2 - 1
        check = onnx.verify_onnx(path, model, x, runtime=runtime)
        assert check.shape == tuple(x.shape)
        assert check.max_abs <= 1e-4, (name, (h, w), check)
    assert not list(tmp_path.glob(".*partial*")), "the atomic writer left its temporary file"


def test_static_export_refuses_other_sizes(models, tmp_path):
    path = onnx.export_onnx(models["lite"], tmp_path / "static.onnx", dynamic=False, example_size=(32, 48))
    runtime = onnx.OnnxTranslator(path)
    assert runtime.fixed_size == (32, 48)
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    assert onnx.verify_onnx(path, models["lite"], x, runtime=runtime).max_abs <= 1e-4
    with pytest.raises(ValueError, match="exported for 32x48 only"):
        runtime(torch.zeros(1, 3, 32, 32))
    # its batch is fixed at 1 too: a batch runs one image at a time, with the same results
    batch = torch.rand(3, 3, 32, 48) * 2 - 1
    torch.testing.assert_close(runtime(batch), torch.cat([runtime(batch[i : i + 1]) for i in range(3)]))


def test_pipeline_onnx_backend_matches_the_torch_backend_on_a_photo(models, lite_folder, tmp_path):
    photo = Image.open(SAMPLES / "space_5.png").convert("RGB").resize((203, 150))  # not multiples of 4
    torch_pipe = ScenimefyPipeline.from_pretrained(lite_folder)
    assert isinstance(torch_pipe.translator, ScenimefyLiteTranslator) and torch_pipe.backend == "torch"
    path = tmp_path / "lite.onnx"
    onnx_pipe = ScenimefyPipeline.from_pretrained(lite_folder, backend="onnx", onnx_path=path)  # exports first
    assert path.is_file() and onnx_pipe.backend == "onnx" and onnx_pipe.device.type == "cpu"
    expected = torch_pipe(photo, mode="exact", output_type="np")
    got = onnx_pipe(photo, output_type="np")
    assert got.shape == expected.shape == (150, 203, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # fp32 both: rounding only
    # an existing file is run as it is: the source is not even loaded
    again = ScenimefyPipeline.from_pretrained(backend="onnx", onnx_path=path, style="mine")
    np.testing.assert_array_equal(again(photo, output_type="np"), got)
    # what the onnx backend cannot do is refused in one sentence
    with pytest.raises(ValueError, match="cannot smooth its normalisation statistics"):
        onnx_pipe.stylize_frames(np.zeros((1, 32, 32, 3), np.uint8), norm_stats=lambda layer, m, v: (m, v))
    with pytest.raises(ValueError, match="runs on the CPU"):
        onnx_pipe.to("cuda")
    with pytest.raises(ValueError, match="onnx_path is for backend='onnx'"):
        ScenimefyPipeline.from_pretrained(lite_folder, onnx_path=path)
    # a mistyped file with no source is not filled with the default style's export
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        ScenimefyPipeline.from_pretrained(backend="onnx", onnx_path=tmp_path / "typo.onnx")
    assert not (tmp_path / "typo.onnx").exists()


def test_video_through_the_onnx_backend_stabilises_with_the_output_filter(lite_folder, tmp_path):
    from scenimefy.inference.video import stylize_video
    from scenimefy.inference.video_io import VideoError
    from tests.support.videos import moving_square, write_clip

    pipe = ScenimefyPipeline.from_pretrained(lite_folder, backend="onnx", onnx_path=tmp_path / "lite.onnx")
    assert not pipe.can_smooth_stats
    src, dst = tmp_path / "clip.mp4", tmp_path / "anime.mp4"
    write_clip(src, moving_square(4, 48, 32), rate=8)
    stylize_video(pipe, src, dst)  # stabilize=True: the output filter alone
    with av.open(str(dst)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    with pytest.raises(VideoError, match="cannot smooth its normalisation statistics"):
        stylize_video(pipe, src, tmp_path / "stats.mp4", stabilize="stats")
    assert not (tmp_path / "stats.mp4").exists()


def test_cli_export_prints_the_verification(lite_folder, tmp_path, capsys):
    out = tmp_path / "sub" / "lite.onnx"
    assert main(["export", str(lite_folder), str(out), "--photo", str(SAMPLES / "space_0.jpg")]) == 0
    text = capsys.readouterr().out
    assert "exported ScenimefyLiteTranslator" in text and "any HxW, multiples of 4" in text
    line = next(row for row in text.splitlines() if row.startswith("verified with onnxruntime on"))
    assert float(line.split("max |diff| ")[1].split()[0]) <= 1e-4
    assert onnx.OnnxTranslator(out).size_multiple == 4


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "scenimefy", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


@pytest.mark.parametrize(
    "case",
    [
        "missing folder",
        "missing .pth",
        "output is a folder",
        "output under a file",
        "output elsewhere",
        "size without static",
        "missing photo",
    ],
)
def test_cli_export_bad_inputs_are_one_line_errors(lite_folder, tmp_path, case):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    source, out, expected = {
        "missing folder": (str(tmp_path / "nope"), str(tmp_path / "x.onnx"), "no such file or folder"),
        "missing .pth": ("outputs/none/Shinkai_net_G.pth", str(tmp_path / "x.onnx"), "no such file or folder"),
        "output is a folder": (str(lite_folder), str(tmp_path), "must be a .onnx file"),
        "output under a file": (str(lite_folder), str(blocker / "x.onnx"), "is not a folder"),
        "output elsewhere": (str(lite_folder), "/proc/scenimefy-test/x.onnx", "cannot write"),
        "size without static": (str(lite_folder), str(tmp_path / "x.onnx"), "--size is the size of a --static"),
        "missing photo": (str(lite_folder), str(tmp_path / "x.onnx"), "nope.jpg"),
    }[case]
    extra = {"size without static": ["--size", "64x64"], "missing photo": ["--photo", str(tmp_path / "nope.jpg")]}
    done = run_cli("export", source, out, *extra.get(case, []))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and expected in done.stderr
    assert "Traceback" not in done.stderr and not done.stdout
    assert not list(tmp_path.glob("*.onnx")), "nothing is written when the export cannot start"
