"""reprise.vision.cifar (tarball reader, fetch, normalise, augment) and reprise.vision.resnet_gn (shapes, sizes)."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest
import torch

from reprise.io import ReproError
from reprise.vision import cifar
from reprise.vision.resnet_gn import resnet18, wide_resnet


def _batch(rng, n, label_key, num_classes):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {b"batch_label": b"x", label_key.encode(): rng.integers(0, num_classes, n).tolist(), b"data": data}


def _tarball(path, name, rng, n=5):
    """A tarball with the real archive's folder and member names and the same pickle layout (bytes keys)."""
    spec = cifar.CIFAR_ARCHIVES[name]
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for member in spec["train"] + spec["test"]:
            batches[member] = _batch(rng, n, spec["label_key"], spec["num_classes"])
            blob = pickle.dumps(batches[member], protocol=2)
            info = tarfile.TarInfo(f"{spec['folder']}/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_cifar_decodes_the_pickled_rows_pixel_by_pixel(tmp_path, name):
    rng = np.random.default_rng(0)
    spec = cifar.CIFAR_ARCHIVES[name]
    path = tmp_path / spec["filename"]
    batches = _tarball(path, name, rng)
    for split in ("train", "test"):
        images, labels = cifar.load_cifar(path, name, split)
        rows = np.concatenate([batches[m][b"data"] for m in spec[split]])
        want_labels = sum((batches[m][spec["label_key"].encode()] for m in spec[split]), [])
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == (len(rows), 3, 32, 32)
        assert labels.tolist() == want_labels
        # the format: 1024 red, then green, then blue values, each image row-major
        for n, c, i, j in [(0, 0, 0, 0), (1, 1, 5, 31), (len(rows) - 1, 2, 31, 7), (2, 2, 17, 0)]:
            assert float(images[n, c, i, j]) == pytest.approx(rows[n, c * 1024 + i * 32 + j] / 255.0)
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # a directory holding the tarball and the extracted folder read the same
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    a, la = cifar.load_cifar(tmp_path, name, "test")
    b, lb = cifar.load_cifar(tmp_path / "x", name, "test")
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_missing_or_wrong_inputs_name_the_file_and_the_fetch_rule(tmp_path):
    with pytest.raises(ReproError, match=r"cifar-10-python.tar.gz.*snakemake fetch_cifar10"):
        cifar.load_cifar(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    with pytest.raises(ReproError, match="snakemake fetch_cifar100"):
        cifar.load_cifar(tmp_path, "cifar100", "test")
    with pytest.raises(ReproError, match="unknown CIFAR"):
        cifar.load_cifar(tmp_path, "cifar11")
    with pytest.raises(ReproError, match="split"):
        cifar.load_cifar(tmp_path, "cifar10", "val")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(ReproError, match="not a readable tarball"):
        cifar.load_cifar(bad, "cifar10")


def test_fetch_checks_md5_writes_atomically_and_records_sha256(tmp_path, monkeypatch):
    src = tmp_path / "src.tar.gz"
    _tarball(src, "cifar10", np.random.default_rng(1), n=2)
    blob = src.read_bytes()
    dest = tmp_path / "data"
    # the wrong checksum (the real archive's md5): nothing is kept
    with pytest.raises(ReproError, match="md5 mismatch"):
        cifar.fetch_cifar("cifar10", dest, url=src.as_uri())
    assert not dest.exists() or not any(dest.iterdir())
    monkeypatch.setitem(cifar.CIFAR_ARCHIVES["cifar10"], "md5", hashlib.md5(blob).hexdigest())
    path = cifar.fetch_cifar("cifar10", dest, url=src.as_uri())
    assert path == dest / "cifar-10-python.tar.gz" and path.read_bytes() == blob
    record = json.loads((dest / "cifar-10-python.tar.gz.json").read_text())
    assert record["sha256"] == hashlib.sha256(blob).hexdigest() and record["md5"] == hashlib.md5(blob).hexdigest()
    # an existing verified file is kept (no download from a URL that does not exist)
    assert cifar.fetch_cifar("cifar10", dest, url=(tmp_path / "gone").as_uri()) == path
    with pytest.raises(ReproError, match="snakemake fetch_cifar100"):
        cifar.fetch_cifar("cifar100", dest, url=(tmp_path / "gone").as_uri())


def test_normalise_uses_the_per_channel_statistics():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    (m, s) = cifar.NORMALISATION["cifar10"]
    z = cifar.normalise(x, "cifar10")
    for c in range(3):
        torch.testing.assert_close(z[:, c], (x[:, c] - m[c]) / s[c])
    # an image that is the mean colour maps to zero
    mean_image = torch.tensor(cifar.NORMALISATION["cifar100"][0]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert float(cifar.normalise(mean_image, "cifar100").abs().max()) < 1e-6
    with pytest.raises(ReproError, match="unknown CIFAR"):
        cifar.normalise(x, "svhn")


def test_augment_is_a_padded_crop_and_an_optional_flip_of_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g)
    out = cifar.augment(x, torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips, shifts = 0, set()
    for n in range(len(x)):  # brute force: exactly one of the 81 windows × 2 flips matches
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.equal(out[n], (lambda w: w.flip(-1) if f else w)(padded[n, :, dy:dy + 32, dx:dx + 32]))]
        assert len(hits) == 1
        flips += hits[0][2]
        shifts.add(hits[0][:2])
    assert 16 < flips < 48 and len(shifts) > 20  # both flips and many offsets occur
    assert torch.equal(out, cifar.augment(x, torch.Generator().manual_seed(5)))  # seeded


def test_cifar_resnets_give_logits_and_the_known_parameter_counts():
    x = torch.randn(2, 3, 32, 32)
    for norm in ("group", "batch"):
        net = resnet18(10, norm=norm)
        assert net(x).shape == (2, 10)
        # 11,173,962 for the CIFAR ResNet-18 at 10 classes (GroupNorm and BatchNorm both have 2C affine params)
        assert sum(p.numel() for p in net.parameters()) == 11_173_962
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == (norm == "batch")
    assert wide_resnet(10, 2, num_classes=100, norm="batch")(x).shape == (2, 100)
    assert sum(p.numel() for p in wide_resnet(28, 10).parameters()) == 36_479_194  # "36.5M" of WRN-28-10
    with pytest.raises(ReproError, match="6n"):
        wide_resnet(depth=27)
    with pytest.raises(ReproError, match="groups"):
        resnet18(groups=7)
    with pytest.raises(ReproError, match="norm"):
        resnet18(norm="layer")
