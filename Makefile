# Two entry points for a fresh clone: `make demo` (web app on 127.0.0.1:7860) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install demo test test-fast lint format bench gpu-check browser-deps clean

# tools/torch_install.py chooses the torch build for this machine and says why (a local CPU wheel
# pip finds, PyTorch's CPU index on Linux without an NVIDIA GPU, PyPI's CUDA build with one, the
# default wheel on macOS); `verify` then fails a CPU choice that pulled CUDA packages.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml tools/torch_install.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) tools/torch_install.py install
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import scenimefy._torchvision as t; print('torchvision start-up hook:', t.install_startup_hook())"
	$(PY) tools/torch_install.py verify
	touch $@

install: $(STAMP)

# Example photos and clips come from ../shared when it is there (never copied into the repo).
demo: $(STAMP)
	$(PY) app.py --host 127.0.0.1 --port 7860 $(if $(wildcard ../shared/samples),--examples ../shared/samples) $(if $(wildcard ../shared/data/video),--examples ../shared/data/video)

# Chromium for the browser tests (Debian packages; Playwright never downloads its own browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed: browser tests will be skipped (apt-get install chromium chromium-driver)"; fi; }

# Two pytest workers (pytest-xdist): much of the suite waits on subprocesses, servers and the
# browser, so two workers on 2 cores take ~0.7x the time of one (TEST_WORKERS=0: one process).
TEST_WORKERS ?= 2

test: $(STAMP) browser-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow and not browser"

# ruff (lint + format check) on the whole tree; `make format` applies the formatter.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do HF_HUB_OFFLINE=1 $(PY) $$f || exit 1; done

# On a machine with a CUDA GPU: latency, video frames/s and training steps/s (benchmarks/gpu_check.py).
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/gpu_check.py 2>&1 | tee gpu-check.log

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
