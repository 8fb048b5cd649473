from .translator import NCE_LAYERS, ScenimefyTranslator

__all__ = ["NCE_LAYERS", "ScenimefyTranslator"]
