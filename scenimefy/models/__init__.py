"""Networks, each built eagerly from its config and saved as config.json + safetensors.

- ``translator``: :class:`ScenimefyTranslator`, the photo -> anime generator G (paper 3.3)
- ``discriminator``: the PatchGAN discriminators D_U and D_P; ``patch_sampler``: the heads F, F_s
- ``stylegan2``: StyleGAN2 generator and discriminator (stage 1), one readable file; ``ops``: its kernels
- ``segmenter``: Mask2Former semantic score maps for selection and L_BCE (stage 2)
"""

from scenimefy.models.discriminator import PatchDiscriminator
from scenimefy.models.patch_sampler import PatchSampler, encoder_tap_channels
from scenimefy.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.models.translator import NCE_LAYERS, ScenimefyTranslator

__all__ = [
    "NCE_LAYERS",
    "PatchDiscriminator",
    "PatchSampler",
    "ScenimefyTranslator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "encoder_tap_channels",
]
