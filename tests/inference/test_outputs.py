"""Atomic outputs: a destination path only ever holds a complete file."""

import errno

import numpy as np
import pytest
from PIL import Image

from scenimefy.inference.outputs import (
    DiskFullError,
    atomic_output,
    image_is_complete,
    is_partial,
    save_image,
    stale_partials,
)
from tests.support.fixtures import gradient


def test_the_destination_appears_only_when_complete(tmp_path):
    dst = tmp_path / "sub" / "photo.png"
    with atomic_output(dst) as tmp:
        assert tmp.parent == dst.parent and tmp.suffix == ".png" and is_partial(tmp)
        Image.fromarray(gradient(32, 24)).save(tmp)
        assert not dst.exists()
    assert image_is_complete(dst) and list(dst.parent.iterdir()) == [dst]


@pytest.mark.parametrize("stop", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_or_an_interrupt_leaves_nothing(tmp_path, stop):
    dst = tmp_path / "photo.png"
    with pytest.raises(type(stop)):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"half a file")
            raise stop
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    dst = tmp_path / "photo.png"
    with pytest.raises(DiskFullError) as err:
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(err.value) == f"cannot write {dst}: no space left on the disk; the partial file was removed"
    assert err.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_save_image_formats_and_completeness(tmp_path):
    rgba = np.concatenate([gradient(20, 10), np.full((10, 20, 1), 128, np.uint8)], axis=2)
    assert Image.open(save_image(rgba, tmp_path / "a.png")).mode == "RGBA"
    assert Image.open(save_image(rgba, tmp_path / "a.jpg")).mode == "RGB"  # JPEG has no alpha
    whole = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    assert image_is_complete(tmp_path / "a.png") and image_is_complete(tmp_path / "a.jpg")
    assert not image_is_complete(tmp_path / "cut.png") and not image_is_complete(tmp_path / "empty.png")
    assert not image_is_complete(tmp_path / "missing.png")
    killed = tmp_path / ".a.1234abcd.partial.png"  # what a SIGKILLed writer leaves
    killed.write_bytes(b"x")
    assert stale_partials(tmp_path / "a.png") == [killed]
