"""Provenance: what produced an output (config, data hashes, model, packages, commit, device)."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("reprise", "torch", "transformers", "datasets", "lm-eval", "accelerate", "gguf", "safetensors",
            "numpy", "snakemake")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    from reprise.io import file_digest

    return file_digest(path, "sha256", chunk)


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def code_fingerprint() -> str:
    """Hash of the package's own source files: a resumed solve must run the same code."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def device_info(device: str | None = None) -> dict[str, Any]:
    """The requested device, the one it resolved to ("auto": CUDA when present) and the hardware."""
    import torch

    from reprise.llm.models.blockwise import pick_device  # the driver's own choice, not a second one

    info: dict[str, Any] = {
        "device": device, "resolved": str(pick_device(device or "auto")), "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_CLUSTER_NAME", "SLURM_RESTART_COUNT")


def slurm_info() -> dict[str, str] | None:
    """The SLURM job this process runs in (None outside SLURM): the cost tables name the job."""
    info = {k.removeprefix("SLURM_").lower(): os.environ[k] for k in SLURM_VARS if k in os.environ}
    return info or None


def resource_usage() -> dict[str, Any]:
    """Peak memory of this process so far: host RSS (MB) and, when CUDA was used, GPU memory (MB).

    Recorded at the end of each job beside Snakemake's ``benchmark:`` file, which measures the
    whole job from outside (wall time, RSS of the process tree) but cannot see the GPU.
    """
    import resource
    import sys

    out: dict[str, Any] = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                           "peak_gpu_mb": None}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(max(torch.cuda.max_memory_allocated(i)
                                       for i in range(torch.cuda.device_count())) / 2**20, 1)
    return out


def provenance(**extra: Any) -> dict[str, Any]:
    """The common record every output directory carries; ``extra`` adds config, data hashes, ...

    Written last by a job, so ``usage`` holds the job's peak memory."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(Path(__file__).parent),
        "code_fingerprint": code_fingerprint(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
        "slurm": slurm_info(),
        "usage": resource_usage(),
        **extra,
    }
