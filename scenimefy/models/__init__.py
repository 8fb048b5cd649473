"""Networks, each built eagerly from its config and saved as config.json + safetensors.

- ``translator``: :class:`ScenimefyTranslator`, the photo -> anime generator G (paper 3.3)
- ``lite``: :class:`ScenimefyLiteTranslator`, the small student distilled from it (same layers, fewer
  channels), and ``count_macs``; ``loading``: config.json's ``_class_name`` -> the translator class
- ``discriminator``: the PatchGAN discriminators D_U and D_P; ``patch_sampler``: the heads F, F_s
- ``stylegan2``: StyleGAN2 generator and discriminator (stage 1), one readable file; ``ops``: its kernels
- ``segmenter``: Mask2Former semantic score maps for selection and L_BCE (stage 2)
"""

from scenimefy.models.discriminator import PatchDiscriminator
from scenimefy.models.lite import ScenimefyLiteTranslator, count_macs, count_params
from scenimefy.models.loading import load_translator_folder, translator_class
from scenimefy.models.patch_sampler import PatchSampler, encoder_tap_channels
from scenimefy.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.models.translator import NCE_LAYERS, ScenimefyTranslator

__all__ = [
    "NCE_LAYERS",
    "PatchDiscriminator",
    "PatchSampler",
    "ScenimefyLiteTranslator",
    "ScenimefyTranslator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "count_macs",
    "count_params",
    "encoder_tap_channels",
    "load_translator_folder",
    "translator_class",
]
