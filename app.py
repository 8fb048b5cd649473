"""Scenimefy web app (Gradio): photos, videos and the webcam into anime scenes.

    python app.py [--host 127.0.0.1] [--port 7860] [--weights shinkai=PATH ...] [--examples DIR ...]

One style selector for every tab. Image tab: a photo in, a PNG out (strength, keep the photo's
colours, resolution cap, before/after, the style's fast model where there is one). Video tab: a
clip in, an MP4 with its sound out (the part and size used, progress with the time left, Cancel).
Live tab: the webcam in, the stylized stream out, with the frames per second it reaches.

The app lives in ``scenimefy.webapp`` (``pip install "scenimefy[app]"``); this file is the entry
point that ``make demo`` runs and the Hugging Face Space (``spaces/``) bundles. docs/app.md
describes the options and limits.
"""

from scenimefy.webapp import build_demo, launch, main, parse_args

__all__ = ["build_demo", "launch", "main", "parse_args"]

if __name__ == "__main__":
    main()
