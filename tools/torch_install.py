"""Chooses and installs the torch build for this machine; the Makefile calls it before the rest.

``requirements.txt`` pins ``torch`` and ``torchvision`` exactly. On PyPI that pin is, on Linux
x86-64, the CUDA build, which pulls the ``nvidia-*`` packages (GBs): right on a machine with an
NVIDIA GPU, wrong everywhere else. So the build is chosen here, in this order:

1. ``SCENIMEFY_TORCH=local|cpu|cuda|default`` forces a choice;
2. **local**: pip's ``find-links`` folders (``PIP_FIND_LINKS``, ``pip config``) hold the pinned
   CPU wheel (``torch-<pin>+cpu-*.whl``, as in this project's workplace): pip installs the pins as
   they are and finds that wheel first;
3. **default** on macOS (PyPI's wheels are the only build: CPU and Apple's MPS);
4. **cuda** where ``nvidia-smi -L`` runs and lists a GPU: PyPI's default (CUDA) build;
5. **cpu** otherwise (Linux, Windows without an NVIDIA GPU): ``torch==<pin>+cpu`` from PyTorch's
   CPU wheel index, no CUDA packages.

The script prints what it chose and why, installs the two pins with ``sys.executable -m pip``,
and records the choice next to the interpreter's environment; ``verify`` (run after the other
requirements) then checks that a CPU choice installed no ``nvidia-*`` package.

    python tools/torch_install.py install [--dry-run]   # choose, say why, install torch + torchvision
    python tools/torch_install.py verify                # after the install: no CUDA packages on a CPU choice

The facts it detects can be given instead (``--os``, ``--gpu``, ``--find-links``): the tests use
them to check each machine's decision here.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FORCE_ENV = "SCENIMEFY_TORCH"
CHOICES = ("local", "cpu", "cuda", "default")
#: Where ``install`` records its choice for ``verify`` (inside the environment it installed into).
CHOICE_FILE = Path(sys.prefix) / "scenimefy-torch-build.txt"


@dataclass(frozen=True)
class Facts:
    os: str  # "linux", "darwin", "windows"
    gpu: str | None  # the first line of `nvidia-smi -L`, or None
    local_wheel: Path | None  # the pinned CPU wheel in one of pip's find-links folders


@dataclass(frozen=True)
class Choice:
    build: str  # one of CHOICES
    why: str
    pip_args: tuple[str, ...]  # what `pip install` gets for the torch step

    @property
    def cpu_only(self) -> bool:
        return self.build in ("local", "cpu")


def pins(requirements: Path = REPO / "requirements.txt") -> dict[str, str]:
    """The exact ``torch`` and ``torchvision`` versions of requirements.txt."""
    found = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"\s*(torch|torchvision)\s*==\s*([^\s#;]+)", line)
        if m:
            found[m.group(1)] = m.group(2)
    missing = {"torch", "torchvision"} - found.keys()
    if missing:
        raise SystemExit(f"{requirements}: no exact pin for {', '.join(sorted(missing))}")
    return found


# ------------------------------------------------------------------------------- detection


def detect_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    return "windows" if sys.platform.startswith(("win", "cygwin")) else sys.platform


def detect_gpu() -> str | None:
    """The first GPU ``nvidia-smi -L`` lists; None without the tool, a driver, or a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("GPU ")]
    return lines[0] if out.returncode == 0 and lines else None


def pip_find_links() -> list[str]:
    """pip's find-links locations: ``PIP_FIND_LINKS`` and every ``find-links`` of ``pip config``."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():  # e.g.  global.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            links += shlex.split(value)
    return list(dict.fromkeys(links))


def local_cpu_wheel(links: list[str], torch_pin: str) -> Path | None:
    """The pinned CPU torch wheel for this Python in a local find-links folder (``file://`` URLs too)."""
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for link in links:
        path = Path(unquote(urlparse(link).path)) if link.startswith("file:") else Path(link)
        if not path.is_dir():
            continue  # an index URL or a missing folder: nothing local
        for wheel in sorted(path.glob(f"torch-{torch_pin}+cpu-*.whl")):
            if python in wheel.name.split("-")[2].split("."):  # name-version-pythontag-abi-platform
                return wheel
    return None


# ------------------------------------------------------------------------------- decision


def choose(facts: Facts, versions: dict[str, str], forced: str | None = None) -> Choice:
    torch_v, vision_v = versions["torch"], versions["torchvision"]
    default = (f"torch=={torch_v}", f"torchvision=={vision_v}")
    cpu = ("--extra-index-url", CPU_INDEX, f"torch=={torch_v}+cpu", f"torchvision=={vision_v}+cpu")
    args = {"local": default, "default": default, "cuda": default, "cpu": cpu}
    if forced:
        if forced not in CHOICES:
            raise SystemExit(f"{FORCE_ENV}={forced!r}: expected one of {', '.join(CHOICES)}")
        return Choice(forced, f"{FORCE_ENV}={forced}", args[forced])
    if facts.local_wheel is not None:
        why = f"pip's find-links hold the pinned CPU wheel {facts.local_wheel} (pip takes it first)"
        return Choice("local", why, args["local"])
    if facts.os == "darwin":
        return Choice("default", "macOS: PyPI's wheel is the only build (CPU and MPS)", args["default"])
    if facts.gpu is not None:
        return Choice("cuda", f"nvidia-smi lists {facts.gpu}: PyPI's CUDA build", args["cuda"])
    why = f"{facts.os}, no NVIDIA GPU (nvidia-smi lists none): the CPU build from {CPU_INDEX}, no CUDA packages"
    return Choice("cpu", why, args["cpu"])


def gather(args: argparse.Namespace, versions: dict[str, str]) -> Facts:
    gpu = {"yes": "GPU 0: (given with --gpu yes)", "no": None}.get(args.gpu) if args.gpu else detect_gpu()
    links = [link for link in args.find_links.split() if link] if args.find_links is not None else pip_find_links()
    return Facts(args.os or detect_os(), gpu, local_cpu_wheel(links, versions["torch"]))


# ------------------------------------------------------------------------------- commands


def install(args: argparse.Namespace) -> int:
    versions = pins()
    choice = choose(gather(args, versions), versions, os.environ.get(FORCE_ENV) or None)
    print(f"torch: {choice.build} build: {choice.why}")
    cmd = [sys.executable, "-m", "pip", "install", "-q", *choice.pip_args]
    print("torch: pip " + " ".join(shlex.quote(c) for c in cmd[3:]))
    if args.dry_run:
        return 0
    result = subprocess.run(cmd, check=False)
    if result.returncode:
        print(f"torch: the install of the {choice.build} build failed (pip exit {result.returncode})", file=sys.stderr)
        return result.returncode
    Path(args.record).write_text(choice.build + "\n")
    return 0


def verify(args: argparse.Namespace) -> int:
    """A CPU choice (local or the CPU index) must not have pulled CUDA packages (the GBs it avoids)."""
    record = Path(args.record)
    build = record.read_text().strip() if record.is_file() else "unknown"
    if build not in ("local", "cpu"):
        print(f"torch: {build} build: CUDA packages allowed")
        return 0
    out = subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True, check=False).stdout
    cuda = [line.split()[0] for line in out.splitlines() if line.lower().startswith("nvidia-")]
    if cuda:
        print(
            f"CUDA packages were installed on a CPU choice ({build}): {', '.join(cuda)}; check the torch pin",
            file=sys.stderr,
        )
        return 1
    print(f"torch: {build} build, no CUDA packages")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="choose the torch build, say why, install torch and torchvision")
    p.add_argument("--dry-run", action="store_true", help="say what would be installed, install nothing")
    p.add_argument("--os", choices=("linux", "darwin", "windows"), help="instead of this machine's")
    p.add_argument("--gpu", choices=("yes", "no"), help="instead of asking nvidia-smi")
    p.add_argument("--find-links", help="pip's find-links locations, space-separated, instead of pip's config")
    p.set_defaults(run=install)
    v = sub.add_parser("verify", help="after the install: a CPU choice installed no nvidia-* package")
    v.set_defaults(run=verify)
    for command in (p, v):
        command.add_argument("--record", default=str(CHOICE_FILE), help="where the choice is kept")
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
