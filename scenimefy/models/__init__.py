from .translator import NCE_LAYERS, ScenimefyTranslator

__all__ = ["NCE_LAYERS", "ScenimefyTranslator"]
from .stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ += ["StyleGAN2Discriminator", "StyleGAN2Generator"]
