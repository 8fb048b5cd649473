from .translator import NCE_LAYERS, ScenimefyTranslator

__all__ = ["NCE_LAYERS", "ScenimefyTranslator"]
from .discriminator import PatchDiscriminator
from .patch_sampler import PatchSampler, encoder_tap_channels

__all__ += ["PatchDiscriminator", "PatchSampler", "encoder_tap_channels"]
from .stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ += ["StyleGAN2Discriminator", "StyleGAN2Generator"]
