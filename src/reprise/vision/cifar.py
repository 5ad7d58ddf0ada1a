"""CIFAR-10 / CIFAR-100 without torchvision: fetch the python-version tarball, read its pickled batches, normalise,
augment (shared by the mSAM and SPARTA papers, specs/other-papers.md §3.5–3.6, §4.4).

- ``CIFAR_ARCHIVES[name]`` (``name`` ∈ ``cifar10``, ``cifar100``): ``url``, ``filename``, ``md5`` (the checksum
  torchvision documents for the archive), ``folder`` (the directory inside the tarball), ``train``/``test`` (the
  member names of the pickled batches), ``label_key`` and ``num_classes``.
- ``fetch_cifar(name, dest_dir) -> Path``: download to ``dest_dir/<filename>`` with urllib (atomic: a failed
  download or a wrong md5 leaves nothing), check the md5, and write ``<filename>.json`` beside it with the md5 and
  the sha256. An existing archive with the right md5 is kept. Needs the network (full scale only; the workflow's
  ``fetch_cifar10`` / ``fetch_cifar100`` rules call it).
- ``load_cifar(archive_or_dir, name, split="train") -> (images, labels)``: ``images`` float32 ``N × 3 × 32 × 32``
  in ``[0, 1]``, ``labels`` int64 (fine labels for CIFAR-100), read straight from the tarball (or from an extracted
  ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or a directory holding the tarball). The pickles hold
  ``data`` as ``uint8 N × 3072`` rows (1024 red, 1024 green, 1024 blue values, each 32 × 32 row-major).
- ``normalise(images, name)``: ``(x − mean_c)/std_c`` with the per-channel mean and standard deviation of the
  training images (``NORMALISATION``); note that the (0.2023, 0.1994, 0.2010) "std" copied by many CIFAR-10 recipes
  is not the per-channel pixel standard deviation — we use the measured one (0.2470, 0.2435, 0.2616).
- ``augment(images, generator)``: per image a random 32 × 32 crop of the zero-padded (4 pixels) image and a
  horizontal flip with probability ½, as batched tensor ops (one gather; no Python loop over images).

Loading the 50 000 training images from the tarball takes about 1–2 s (decompression dominates).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from reprise.io import ReproError, download, file_digest, write_json

__all__ = ["CIFAR_ARCHIVES", "NORMALISATION", "augment", "fetch_cifar", "load_cifar", "normalise"]

_BASE = "https://www.cs.toronto.edu/~kriz/"

CIFAR_ARCHIVES: dict[str, dict] = {
    "cifar10": dict(url=_BASE + "cifar-10-python.tar.gz", filename="cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"], label_key="labels",
                    num_classes=10),
    "cifar100": dict(url=_BASE + "cifar-100-python.tar.gz", filename="cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python", train=["train"],
                     test=["test"], label_key="fine_labels", num_classes=100),
}

#: per-channel (mean, std) of the training images in [0, 1]
NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _spec(name: str) -> dict:
    if name not in CIFAR_ARCHIVES:
        raise ReproError(f"unknown CIFAR dataset {name!r}; use one of {', '.join(CIFAR_ARCHIVES)}")
    return CIFAR_ARCHIVES[name]


def fetch_cifar(name: str, dest_dir, *, url: str | None = None, timeout: float = 300.0) -> Path:
    """Download CIFAR archive ``name`` into ``dest_dir`` (md5-checked, atomic); record md5 and sha256 beside it."""
    spec = _spec(name)
    target = Path(dest_dir) / spec["filename"]
    record = target.with_name(target.name + ".json")
    if target.is_file() and file_digest(target, "md5") == spec["md5"]:
        if not record.is_file():
            write_json(record, dict(dataset=name, url=spec["url"], md5=spec["md5"], sha256=file_digest(target, "sha256")))
        return target
    source = url or spec["url"]
    sha = download(source, target, expect={"md5": spec["md5"]}, timeout=timeout, what=f"fetch_cifar({name!r})",
                   hint=f"CIFAR is needed at full scale only: run `snakemake fetch_{name}` where the network is "
                        f"reachable, or place {spec['filename']} (md5 {spec['md5']}) in {target.parent}")["sha256"]
    write_json(record, dict(dataset=name, url=source, md5=spec["md5"], sha256=sha))
    return target


def _missing(path, spec, name) -> ReproError:
    return ReproError(f"CIFAR data {path} not found (expected {spec['filename']} or its extracted folder "
                      f"{spec['folder']}/): run `snakemake fetch_{name}` (full scale only; needs the network)")


def _batches(path: Path, spec: dict, members: list[str], name: str):
    """Yield the unpickled dicts of ``members`` from a tarball or an extracted folder."""
    if path.is_dir():
        folder = path / spec["folder"] if (path / spec["folder"]).is_dir() else path
        if (path / spec["filename"]).is_file() and not (folder / members[0]).is_file():
            yield from _batches(path / spec["filename"], spec, members, name)
            return
        for m in members:
            f = folder / m
            if not f.is_file():
                raise _missing(f, spec, name)
            with open(f, "rb") as fh:
                yield pickle.load(fh, encoding="bytes")
        return
    if not path.is_file():
        raise _missing(path, spec, name)
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in members:
                try:
                    fh = tar.extractfile(f"{spec['folder']}/{m}")
                except KeyError:
                    raise ReproError(f"{path}: member {spec['folder']}/{m} missing; is this the {name} python-"
                                     f"version archive? Re-run `snakemake fetch_{name}`") from None
                yield pickle.load(io.BytesIO(fh.read()), encoding="bytes")
    except tarfile.TarError as exc:
        raise ReproError(f"{path}: not a readable tarball ({exc}); delete it and re-run `snakemake fetch_{name}`") \
            from None


def load_cifar(archive_or_dir, name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float32 N×3×32×32 in [0, 1]) and int64 labels of ``split`` ∈ {train, test}."""
    spec = _spec(name)
    if split not in ("train", "test"):
        raise ReproError(f"load_cifar: split={split!r} must be 'train' or 'test'")
    key = spec["label_key"].encode()
    data, labels = [], []
    for batch in _batches(Path(archive_or_dir), spec, spec[split], name):
        data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[key], dtype=np.int64))
    images = torch.from_numpy(np.concatenate(data)).to(torch.float32).div_(255.0)
    return images, torch.from_numpy(np.concatenate(labels))


def normalise(images: torch.Tensor, name: str) -> torch.Tensor:
    """Per-channel standardisation with the training-set statistics of ``name`` (a new tensor)."""
    if name not in NORMALISATION:
        raise ReproError(f"normalise: unknown CIFAR dataset {name!r}; use one of {', '.join(NORMALISATION)}")
    mean, std = (torch.tensor(v, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
                 for v in NORMALISATION[name])
    return (images - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4) -> torch.Tensor:
    """Random crop (same size, zero padding ``padding``) and random horizontal flip of every image of a batch."""
    if images.dim() != 4:
        raise ReproError(f"augment: images must be N×C×H×W, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    # generator on the CPU so a seed gives the same crops on every device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    rows = dy[:, None] + torch.arange(h, device=images.device)[None, :]                       # n × h
    cols = torch.arange(w, device=images.device)[None, :]
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]                       # n × w
    c = images.shape[1]
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
