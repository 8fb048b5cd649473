"""Stylizing images and videos with a trained translator.

- ``pipeline``: :class:`ScenimefyPipeline` (load, preprocess, run, postprocess); the frame API,
  where the backends plug in (``"torch"``: ``translate``; ``"onnx"``: onnxruntime)
- ``onnx``: ONNX export of any translator (full or lite) and :class:`OnnxTranslator`, the onnx backend
- ``engine``: the fast path every stylization goes through, ``translate(model, x)``
- ``runtime``: device capabilities, dtype/layout choice, process-wide state scoped to a call
- ``graph``: the translator compiled into an op list of ``ops``; ``tiling``: memory model and tiled runs
- ``video``: stylize a clip (PyAV decode -> frames -> H.264); ``video_io``: probing, audio, ranges
- ``stabilize``: temporal stabilisation (statistics, output filter) and the flicker index
- ``flow``: optical flow between frames (OpenCV DIS) and its confidence; ``temporal``: the
  flow-guided blend and keyframe reuse between the decoder and the encoder of ``video``
- ``adjust``: post-stylization image adjustments (strength, keep the photo's colours)
- ``outputs``: atomic writing of every output (temporary name, renamed when complete)
- ``batch``: many images (files, folders, a ``datasets`` dataset), resumable, across processes
"""

from scenimefy.inference.engine import translate
from scenimefy.inference.pipeline import ScenimefyPipeline, load_translator
from scenimefy.inference.runtime import ExecutionSettings, choose_settings, cpu_has_fast_bf16

__all__ = [
    "ExecutionSettings",
    "ScenimefyPipeline",
    "choose_settings",
    "cpu_has_fast_bf16",
    "load_translator",
    "translate",
]
