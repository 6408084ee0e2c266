"""The machine a benchmark runs on: CPU, memory, library versions and peak RSS probes."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.settings import REPO_ROOT
from benchmarks.stats import slug

if TYPE_CHECKING:
    pass


def machine_info(name: str | None = None) -> dict[str, Any]:
    """CPU model, CPU counts, memory and platform: what the figures depend on."""
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) * 1024 / 1e9
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "name": slug(name or platform.node() or "machine"),
        "hostname": platform.node(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    """Library versions of the card (``library_versions``) plus the HTTP stack's."""
    import importlib.metadata as md

    try:
        from training.rundir import library_versions

        found = library_versions()
    except ImportError:  # no torch here: only the packages that are installed
        found = {"python": platform.python_version()}
    for package in ("fastapi", "uvicorn", "httpx", "tokenizers", "onnxruntime", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            found.setdefault(package, md.version(package))
    return found


def ru_maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` of this process, in MB.

    Linux carries ``ru_maxrss`` over ``execve`` from the process that forked, so in a
    worker it is at least the parent's RSS at the fork; :func:`peak_rss_mb` is the
    figure to report, this one is kept beside it in the JSON.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return kib * scale / 1e6


def vmhwm_mb(pid: int | str) -> float | None:
    """Peak RSS (``VmHWM``) of a live process, from ``/proc/<pid>/status``, in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else None


def peak_rss_mb() -> float:
    """This process's own peak RSS in MB: ``VmHWM``, else ``ru_maxrss`` off Linux.

    ``VmHWM`` belongs to the address space that ``execve`` created, so unlike
    ``ru_maxrss`` it does not include the benchmark process that started the worker.
    """
    own = vmhwm_mb("self")
    return own if own is not None else ru_maxrss_mb()


# --------------------------------------------------------------------------- workload


def child_env() -> dict[str, str]:
    """This environment, with the repository on ``PYTHONPATH`` for a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def log_tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a child's log, joined on one line; empty if unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
