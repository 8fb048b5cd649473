"""Getting and sharing weights.

- ``download``: Hub files, folders and URLs that never hang (offline-aware), the segmenter's weights
- ``styles``: the style registry (a style name -> where its translator weights live)
- ``convert``: the authors' released checkpoints -> config.json + safetensors folders
- ``translators``: any translator source (style, folder, ``.pth``, Hub id) -> the network, full or lite
- ``publish``: upload translators, StyleGAN2 networks and datasets to the Hub
- ``cards``: the one writer of model and dataset cards (front matter, licence, citation)
"""

from scenimefy.hub.download import (
    DEFAULT_SEGMENTER,
    WeightsUnavailableError,
    download_hub_file,
    download_hub_folder,
    download_url,
    host_reachable,
    hub_reachable,
    load_segmenter,
    offline_mode,
    segmenter_folder,
)

__all__ = [
    "DEFAULT_SEGMENTER",
    "WeightsUnavailableError",
    "download_hub_file",
    "download_hub_folder",
    "download_url",
    "host_reachable",
    "hub_reachable",
    "load_segmenter",
    "offline_mode",
    "segmenter_folder",
]
