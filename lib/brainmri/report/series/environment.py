"""What a run ran on: package versions, machine, accelerators, code revision."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

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


#: Vector instruction sets that decide which oneDNN kernels TensorFlow runs on a CPU.
VECTOR_SETS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def describe_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model and vector instruction sets. Training is bit-reproducible on one
    CPU, but another CPU can run other kernels whose float sums round differently, so a
    model retrained after a move to another machine may differ: the record shows a move."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "flags" not in fields:  # not x86 (an ARM machine lists "Features"): no AVX to name
        return fields.get("model name") or platform.processor() or platform.machine()
    vectors = [name for name in VECTOR_SETS if name in fields["flags"].split()]
    return f"{fields.get('model name', 'unknown')} ({', '.join(vectors) or 'no AVX'})"


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
        "cpu": describe_cpu(),
        "gpus": _gpus(),
        "git_revision": git_revision(),
        "packages": {name: v for name in PACKAGES if (v := _version(name))},
    }
