"""Data for the vision study: scikit-learn's digits (offline) and a user-provided ImageNet.

Digits: the 1797 8×8 grey images of ``sklearn.datasets.load_digits`` (pixel values 0–16), split
once, stratified by class with a fixed seed, into disjoint test (25%), calibration (``calib_n``
images, 256 by default) and train (the rest) parts. Pixels are standardised with the training
part's scalar mean and standard deviation. Tensors are ``(N, 1, 8, 8)`` float32, labels int64.

ImageNet: ``<imagenet_dir>/train`` and ``<imagenet_dir>/val`` in the ImageFolder layout (one
folder per class, named by WordNet id, the same 1000 in both; sorted names give the labels
0–999 in the order torchvision's weights use), read with PIL (torchvision is not a dependency),
with the standard evaluation transform: resize the short side to 256 (bilinear), centre-crop 224,
normalise with the ImageNet mean/std. Calibration images are ``calib_n`` drawn from train with
``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reprise.io import ReproError

IMAGENET_KEY = "vision.imagenet_dir"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_LAYOUT = ("<dir>/train/<wnid>/*.JPEG and <dir>/val/<wnid>/*.JPEG (ImageFolder layout: one folder per "
                   "class, e.g. train/n01440764/; the validation images must be sorted into the same class "
                   "folders, e.g. with the usual valprep.sh)")


@dataclass(frozen=True)
class DigitsSplits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "calibration": len(self.calib_y), "test": len(self.test_y)}


def digits_splits(seed: int = 0, calib_n: int = 256, test_fraction: float = 0.25) -> DigitsSplits:
    """Stratified, seeded, disjoint train / calibration / test parts of the digits (see module doc)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    if not 0 < test_fraction < 1:
        raise ReproError(f"digits: test_fraction={test_fraction!r} must be in (0, 1)")
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    if not isinstance(calib_n, int) or not 10 <= calib_n <= len(rest) - 100:
        raise ReproError(f"digits: calib_n={calib_n!r} must be an integer from 10 to {len(rest) - 100} "
                         f"(the calibration images come out of the {len(rest)} non-test images)")
    train, calib = train_test_split(rest, test_size=calib_n, stratify=y[rest], random_state=seed)
    Xf = X.astype(np.float32)
    mean, std = float(Xf[train].mean()), float(Xf[train].std())

    def part(ix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.from_numpy((Xf[np.sort(ix)] - mean) / std).reshape(-1, 1, 8, 8)
        return xs.contiguous(), torch.from_numpy(y[np.sort(ix)]).long()

    (trx, tr_y), (cx, cy), (tx, ty) = part(train), part(calib), part(test)
    return DigitsSplits(trx, tr_y, cx, cy, tx, ty, mean, std)


# --------------------------------------------------------------------------- ImageNet

def check_imagenet_dir(imagenet_dir: str | Path | None) -> Path:
    """The root as a Path; ReproError naming ``vision.imagenet_dir`` and the layout otherwise."""
    if imagenet_dir is None or str(imagenet_dir) == "":
        raise ReproError(f"{IMAGENET_KEY} is not set: ImageNet accuracy and calibration need a local copy; set "
                         f"{IMAGENET_KEY} (CLI: --imagenet-dir) to a directory laid out as {IMAGENET_LAYOUT}")
    root = Path(imagenet_dir).expanduser()
    if not root.is_dir():
        raise ReproError(f"{IMAGENET_KEY}={str(imagenet_dir)!r}: no such directory; point it at a directory laid "
                         f"out as {IMAGENET_LAYOUT}")
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise ReproError(f"{IMAGENET_KEY}={str(imagenet_dir)!r} has no {' or '.join(s + '/' for s in missing)} "
                         f"subfolder; expected {IMAGENET_LAYOUT}")
    for s in ("train", "val"):
        if not any(p.is_dir() for p in (root / s).iterdir()):
            raise ReproError(f"{IMAGENET_KEY}={str(imagenet_dir)!r}: {s}/ holds no class folders; expected "
                             f"{IMAGENET_LAYOUT}")
    return root


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def eval_transform(image, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """The standard ImageNet evaluation transform of one PIL image: RGB, short side resized to
    ``resize`` (bilinear, long side scaled and truncated), centre crop ``crop`` × ``crop``, scaled to
    [0, 1] and normalised with the ImageNet mean/std; returns ``(3, crop, crop)`` float32."""
    from PIL import Image

    img = image.convert("RGB")
    w, h = img.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class ImageFolderDataset(torch.utils.data.Dataset):
    """``<root>/<class>/<image>`` (the ImageFolder layout): classes are the sorted folder names,
    labelled 0, 1, …; images are the files with an image extension, sorted, in every class folder
    (nested folders included). Items are ``(eval_transform(image), label)``."""

    def __init__(self, root: str | Path, crop: int = 224):
        root = Path(root)
        self.root = root
        self.crop = crop
        self.resize = round(crop * 256 / 224)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples: list[tuple[Path, int]] = []
        for label, cls in enumerate(self.classes):
            files = sorted(p for p in (root / cls).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            self.samples += [(f, label) for f in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            return eval_transform(img, self.resize, self.crop), label


def imagenet_folders(imagenet_dir: str | Path | None, crop: int = 224
                     ) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """``(train, val)`` datasets of ``<imagenet_dir>/train`` and ``/val`` with the evaluation transform."""
    root = check_imagenet_dir(imagenet_dir)
    train, val = ImageFolderDataset(root / "train", crop), ImageFolderDataset(root / "val", crop)
    for name, ds in (("train", train), ("val", val)):
        if len(ds) == 0:
            raise ReproError(f"{IMAGENET_KEY}={str(imagenet_dir)!r}: {name}/ holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); expected {IMAGENET_LAYOUT}")
    if train.classes != val.classes:
        raise ReproError(f"{IMAGENET_KEY}={str(imagenet_dir)!r}: train/ has {len(train.classes)} class folders and "
                         f"val/ {len(val.classes)}, not the same set; expected {IMAGENET_LAYOUT}")
    return train, val


def subset_indices(n_total: int, n: int | None, seed: int) -> list[int]:
    """``n`` indices out of ``n_total`` drawn without replacement by a seeded generator (all if None)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n_total, generator=g)[:n].tolist())


def imagenet_calibration(imagenet_dir: str | Path | None, calib_n: int, seed: int = 0, crop: int = 224,
                         workers: int = 0) -> torch.Tensor:
    """``calib_n`` training images (seeded draw) as one ``(calib_n, 3, crop, crop)`` tensor."""
    train, _ = imagenet_folders(imagenet_dir, crop)
    idx = subset_indices(len(train), calib_n, seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, idx), batch_size=32, num_workers=workers)
    return torch.cat([x for x, _ in loader])


def imagenet_val_loader(imagenet_dir: str | Path | None, batch_size: int = 64, eval_n: int | None = None,
                        seed: int = 0, crop: int = 224, workers: int = 0):
    """DataLoader over val (all images, or a seeded subset of ``eval_n``)."""
    _, val = imagenet_folders(imagenet_dir, crop)
    ds = val if eval_n is None else torch.utils.data.Subset(val, subset_indices(len(val), eval_n, seed))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers)
