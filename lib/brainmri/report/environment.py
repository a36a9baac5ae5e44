"""What a run ran on: package versions, machine, accelerators, code revision."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

from brainmri.core import paths

PACKAGES = ("brainmri", "tensorflow-cpu", "tensorflow", "keras", "tf-keras", "xplique",
            "tensorflow-probability", "numpy", "scikit-learn", "scipy", "scikit-image",
            "pandas", "pillow", "opencv-python-headless", "imagehash", "papermill",
            "jupyter-book", "matplotlib")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    if not shutil.which("git"):
        return None
    try:
        out = subprocess.run(["git", "-C", str(paths.project_root()), "rev-parse", "--short",
                              "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        # A run's own outputs (results/, the shipped model in models/) are not inputs:
        # rewriting them while the run goes on must not make the revision "dirty".
        dirty = subprocess.run(["git", "-C", str(paths.project_root()), "status",
                                "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)models"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (subprocess.SubprocessError, OSError):
        return None


def _gpus() -> list[str]:
    """GPU names from nvidia-smi, without importing TensorFlow (slow) in the runner."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    except (subprocess.SubprocessError, OSError):
        return []


def describe_environment() -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": _gpus(),
        "git_revision": git_revision(),
        "packages": {name: v for name in PACKAGES if (v := _version(name))},
    }
