"""Convert the authors' released checkpoints into config.json + safetensors folders.

The reference translator (``Shinkai_net_G.pth``) is a bare state dict of CUT's ``ResnetGenerator``
with keys ``model.<i>.*`` that index its ``nn.Sequential``. The architecture is not stored, so it
is inferred here from the keys and tensor shapes (ngf, block count, anti-aliasing).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from scenimefy.models.translator import ScenimefyTranslator, binomial_filter


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not match the expected layout."""


def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    Pickles that would construct arbitrary objects are refused before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and was refused "
            f"(only weights_only checkpoints are loaded; nothing in it was executed): {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _group_by_index(state: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:module\.)?model\.(\d+)\.(.+)", key)
        if match is None:
            raise CheckpointError(f"unexpected key {key!r}: not a reference ResnetGenerator state dict")
        groups.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return groups


def _check_filter(filt: torch.Tensor, size: int, scale: float, where: int) -> None:
    expected = binomial_filter(size) * scale
    if filt.shape[-2:] != expected.shape or not torch.allclose(filt[:, 0], expected.expand_as(filt[:, 0])):
        raise CheckpointError(f"model.{where}.filt is not the {size}x{size} binomial blur the translator uses")


def translator_from_reference(state: dict[str, torch.Tensor]) -> ScenimefyTranslator:
    """Build a :class:`ScenimefyTranslator` holding the weights of a reference state dict."""
    groups = _group_by_index(state)
    kinds = []  # ("conv" | "blur" | "res", index), in network order
    for index in sorted(groups):
        params = groups[index]
        if "filt" in params:
            kinds.append(("blur", index))
        elif any(k.startswith("conv_block.") for k in params):
            kinds.append(("res", index))
        elif "weight" in params and params["weight"].ndim == 4:
            kinds.append(("conv", index))
        else:
            raise CheckpointError(f"model.{index} has unexpected parameters {sorted(params)}")
    res = [i for kind, i in kinds if kind == "res"]
    if not res:
        raise CheckpointError("no residual blocks found: not a ResnetGenerator state dict")
    first_res, last_res = kinds.index(("res", res[0])), kinds.index(("res", res[-1]))
    encoder, decoder = kinds[:first_res], kinds[last_res + 1 :]
    if kinds[first_res : last_res + 1] != [("res", i) for i in res]:
        raise CheckpointError("residual blocks are not contiguous")

    antialias = [k for k, _ in encoder].count("blur") == 2
    antialias_up = [k for k, _ in decoder].count("blur") == 2
    stem_w = groups[encoder[0][1]]["weight"]
    ngf, in_channels = stem_w.shape[0], stem_w.shape[1]
    out_channels = groups[decoder[-1][1]]["weight"].shape[0]
    model = ScenimefyTranslator(
        in_channels=in_channels,
        out_channels=out_channels,
        ngf=ngf,
        n_blocks=len(res),
        antialias=antialias,
        antialias_up=antialias_up,
    )

    convs_enc = [i for k, i in encoder if k == "conv"]
    convs_dec = [i for k, i in decoder if k == "conv"]
    if len(convs_enc) != 3 or len(convs_dec) != 3:
        raise CheckpointError("expected a stem conv, two down convs, two up convs and a head conv")
    for kind, index in encoder + decoder:
        if kind == "blur":
            upsampling = index > res[-1]
            _check_filter(groups[index]["filt"], 4 if upsampling else 3, 4.0 if upsampling else 1.0, index)

    ours: dict[str, torch.Tensor] = {}

    def put(prefix: str, index: int, sub: str = "") -> None:
        for name in ("weight", "bias"):
            ours[f"{prefix}.{name}"] = groups[index][f"{sub}{name}"]

    put("stem", convs_enc[0])
    put("down.0.conv", convs_enc[1])
    put("down.1.conv", convs_enc[2])
    for block, index in enumerate(res):
        put(f"blocks.{block}.conv1", index, "conv_block.1.")
        put(f"blocks.{block}.conv2", index, "conv_block.5.")
    put("up.0.conv", convs_dec[0])
    put("up.1.conv", convs_dec[1])
    put("head", convs_dec[2])
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not fit the inferred architecture: {err}") from None
    return model.eval()


def load_reference_translator(path: str | os.PathLike) -> ScenimefyTranslator:
    """Read a reference ``*_net_G.pth`` safely and convert it."""
    state = safe_torch_load(path)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a bare state dict of tensors")
    return translator_from_reference(state)


def convert_reference_translator(src: str | os.PathLike, out_dir: str | os.PathLike) -> ScenimefyTranslator:
    """``Shinkai_net_G.pth`` -> ``out_dir/{config.json, diffusion_pytorch_model.safetensors}``."""
    model = load_reference_translator(src)
    model.save_pretrained(out_dir)
    return model
