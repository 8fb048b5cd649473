"""The web app (Gradio 6; the ``[app]`` extra): ``python app.py`` and the Hugging Face Space serve it.

- ``server``: ``build_demo`` (the page: one style selector above the Image, Video and Live tabs),
  ``launch`` (queue and upload limits), the command line (``parse_args``, ``main``)
- ``image_tab``, ``video_tab``, ``live_tab``: one module per tab, its components and handlers
- ``live_size``: the Live tab's working size (and threads), measured per fast model on this CPU
- ``styles``: which styles (and fast variants) can run on this server, in words for the page
- ``context``: what the tabs share: the server's limits, the loaded pipelines, the jobs running
- ``messages``: every sentence the page shows about a problem, and the notes' formatters
- ``media``: upload checks, the scratch folder for results, example media, freeing memory

Importing this package loads gradio (with its usage analytics off unless
``GRADIO_ANALYTICS_ENABLED`` says otherwise); ``import scenimefy`` does not import it.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio  # noqa: F401
except ImportError as err:  # `pip install scenimefy` without the extra
    raise ImportError('the web app needs Gradio: pip install "scenimefy[app]"') from err

from scenimefy.webapp.server import build_demo, launch, main, parse_args

__all__ = ["build_demo", "launch", "main", "parse_args"]
