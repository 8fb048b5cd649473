"""The pairs dataset both pair stages write: parquet shards made block by block, resumable.

Stage 2 (``pairs``: StyleGAN2 candidates) and the diffusion stage (``diffusion_pairs``: real
photos) cut their candidates into blocks. Process p of P makes blocks p, p+P, ... in lockstep
rounds (:func:`run_blocks`); a finished block leaves a parquet shard of its kept pairs and then a
marker, both written under a temporary name and renamed (:func:`atomic_write`), so a killed run
loses at most the blocks in flight and the same command resumes from what is on disk. The
settings that decide the pairs are stored in ``.progress/run.json`` and a resume with other ones
is refused (:func:`start_run`). Layout (``datasets.load_dataset(dir)`` reads it)::

    data/train-b000000.parquet ...   one shard per block with kept pairs
    README.md                        dataset card (YAML front matter for the Hub)
    .progress/run.json, block-*.json resume state (hidden: never published)
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Features, Image
from PIL import Image as PILImage

from scenimefy.training.config import ConfigError


def shard_path(out: Path, block: int) -> Path:
    return out / "data" / f"train-b{block:06d}.parquet"


def marker_path(out: Path, block: int) -> Path:
    return out / ".progress" / f"block-{block:06d}.json"


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp_path)`` then rename: readers and restarts never see a partial file."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def read_marker(out: Path, block: int) -> dict | None:
    path = marker_path(out, block)
    return json.loads(path.read_text()) if path.is_file() else None


def write_marker(out: Path, block: int, record: dict) -> None:
    atomic_write(marker_path(out, block), lambda p: p.write_text(json.dumps(record)))


def read_markers(out: Path) -> dict[int, dict]:
    """{block: its marker} of every finished block."""
    records = (json.loads(p.read_text()) for p in sorted((out / ".progress").glob("block-*.json")))
    return {r["block"]: r for r in records}


def start_run(out: Path, settings: dict[str, Any], path_keys: Iterable[str] = ()) -> None:
    """Create the folders; refuse to resume a run whose pair-defining ``settings`` differ.

    ``path_keys``: settings naming local files or folders, compared by their resolved path.
    """
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / ".progress").mkdir(exist_ok=True)
    settings = dict(settings)
    for key in path_keys:  # one folder, however it is spelled
        if settings.get(key) and Path(str(settings[key])).exists():
            settings[key] = str(Path(str(settings[key])).resolve())
    settings = json.loads(json.dumps(settings, default=str))
    run_file = out / ".progress" / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        if changed:
            raise ConfigError(
                f"{out} holds a run with different {changed} ({[previous.get(k) for k in changed]}); "
                "use another --output_dir or the same settings"
            )
    else:
        atomic_write(run_file, lambda p: p.write_text(json.dumps(settings, indent=1)))


def write_rows(path: Path, rows: dict[str, list], features: Features) -> None:
    table = pa.Table.from_pydict(features.encode_batch(rows), schema=features.arrow_schema)
    atomic_write(path, lambda p: pq.write_table(table, p))


def png(image: torch.Tensor) -> dict:
    """A (3, H, W) uint8 tensor -> the PNG bytes of a ``datasets.Image`` cell."""
    buffer = io.BytesIO()
    PILImage.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def shard_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows if path.is_file() else 0


def remove_leftovers(out: Path, finished: Iterable[int]) -> None:
    """Shards of blocks that never finished and temporaries of a killed run."""
    finished = set(finished)
    for path in (out / "data").glob("train-b*.parquet"):
        if int(path.stem[len("train-b") :]) not in finished:
            path.unlink()
    for path in [*(out / "data").glob(".tmp-*"), *(out / ".progress").glob(".tmp-*")]:
        path.unlink()


def uncompressed_bytes(path: Path) -> int:
    meta = pq.read_metadata(path)
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def hub_front_matter(out: Path, features: Features, n: int, tags: list[str]) -> dict[str, Any]:
    """The dataset card's Hub front matter: configs, features, the train split's size."""
    shards = sorted((out / "data").glob("train-b*.parquet"))
    num_bytes = sum(uncompressed_bytes(p) for p in shards)
    columns = [{"name": k, "dtype": "image" if isinstance(v, Image) else v.dtype} for k, v in features.items()]
    return {
        "task_categories": ["image-to-image"],
        "tags": ["scenimefy", "anime", "pseudo-paired", *tags],
        "size_categories": [size_category(n)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": columns,
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": n}],
            "download_size": sum(p.stat().st_size for p in shards),
            "dataset_size": num_bytes,
        },
    }


def run_blocks(
    accelerator: Any,
    out: Path,
    num_blocks: int,
    make_block: Callable[[int], dict],
    *,
    progress: Callable[[int, int], int],
    total: int,
    desc: str,
    unit: str,
    enough: Callable[[int], bool] = lambda kept: False,
    stopped: Callable[[int, int], str],
    complete: Callable[[dict], bool] = lambda record: True,
) -> tuple[int, int]:
    """Make every block not finished yet, process p of P taking blocks p, p+P, ... in rounds.

    A block counts as finished when it has a marker that ``complete(marker)`` accepts (a block
    that now holds more candidates than when it was made is made again).

    After each round the processes' (kept, candidates) counts are gathered, so all of them see the
    same totals and stop together once ``enough(kept)``. The bar shows ``progress(kept,
    candidates)`` of ``total``. Ctrl-C / SIGTERM raise ``TrainingStopped`` with ``stopped(kept,
    candidates)`` as its message. Returns the (kept, candidates) totals.
    """
    from tqdm.auto import tqdm

    from scenimefy.training.loop import TrainingStopped

    procs, rank = accelerator.num_processes, accelerator.process_index
    kept = candidates = 0
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not accelerator.is_main_process)
    try:
        for first in range(0, num_blocks, procs):  # one round: blocks first .. first + procs - 1
            block = first + rank
            record = {"kept": 0, "candidates": 0}
            if block < num_blocks:
                record = read_marker(out, block)
                if record is None or not complete(record):
                    record = make_block(block)
            counts = accelerator.gather(
                torch.tensor([[record["kept"], record["candidates"]]], device=accelerator.device)
            )
            kept, candidates = kept + int(counts[:, 0].sum()), candidates + int(counts[:, 1].sum())
            bar.update(min(progress(kept, candidates), total) - bar.n)
            bar.set_postfix(accept=f"{kept / max(candidates, 1):.1%}", candidates=candidates)
            if enough(kept):
                break
    except KeyboardInterrupt as interrupt:
        bar.close()
        raise TrainingStopped(
            candidates,
            None,
            terminated=type(interrupt).__name__ == "Terminated",
            message=stopped(kept, candidates),
        ) from None
    bar.close()
    return kept, candidates
