"""reprise.vision.study and ``reprise vision``: the digits study end to end, random-weight
shape/speed runs, a tiny ImageNet-layout folder, and the errors that name the config key."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from reprise.cli import main
from reprise.io import ReproError
from reprise.vision.models import MOBILENET_NOTE, RANDOM_LABEL
from reprise.vision.study import COLUMNS, run_channel_study
from reprise.vision.train import train_digits


@pytest.fixture(scope="module")
def digits_rows():
    layers: list[dict] = []
    rows = run_channel_study("digits-resnet", ["mp", "mp-plus", "osscar"], [0.5], progress=False, layer_log=layers)
    return rows, layers


def test_digits_study_rows_and_osscar_beats_magnitude(digits_rows):
    rows, layers = digits_rows
    by = {r["method"]: r for r in rows}
    assert list(by) == ["dense", "mp", "mp-plus", "osscar"] and all(list(r) == list(COLUMNS) for r in rows)
    assert by["dense"]["top1"] >= 0.95 and by["dense"]["flops_kept"] == 1
    assert by["osscar"]["top1"] >= by["mp"]["top1"]
    assert by["osscar"]["top1"] >= by["dense"]["top1"] - 0.05  # one-shot, no fine-tuning, still close
    # the same kept-channel budget for every method: equal parameters and FLOPs, all below dense
    assert len({(by[m]["params"], by[m]["flops"]) for m in ("mp", "mp-plus", "osscar")}) == 1
    assert by["mp"]["params"] < by["dense"]["params"] and 0.4 < by["mp"]["flops_kept"] < 0.7
    # per layer: OSSCAR's reconstruction error <= MP+ (same support rule, refit) <= MP (no refit)
    obj = {(r["method"], r["layer"]): r["objective"] for r in layers}
    names = sorted({r["layer"] for r in layers})
    assert len(names) == 3
    for name in names:
        assert obj["osscar", name] <= obj["mp-plus", name] * (1 + 1e-9)
        assert obj["mp-plus", name] <= obj["mp", name] * (1 + 1e-9)
    assert all(r["label"] == "digits" and r["eval_n"] == 450 and r["latency_ms"] is None for r in rows)


def test_digits_training_is_deterministic_for_a_seed():
    a, ia = train_digits(seed=5, epochs=2)
    b, ib = train_digits(seed=5, epochs=2)
    assert ia["test_top1"] == ib["test_top1"]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_random_weight_mobilenet_run_reports_latency_not_accuracy():
    """random weights: shape and speed checks only (Gaussian inputs, no ImageNet)."""
    rows = run_channel_study("mobilenet_v2", ["mp-plus"], [0.5], pretrained=False, input_size=64, progress=False,
                             threads=1, latency_repeats=2)
    assert [r["method"] for r in rows] == ["dense", "mp-plus"]
    for r in rows:
        assert r["label"] == RANDOM_LABEL and r["top1"] is None
        assert r["latency_ms"] > 0 and r["latency_batch"] == 1 and r["threads"] == 1
        assert "top1 not measured" in r["note"] and MOBILENET_NOTE in r["note"]
    assert rows[1]["params"] < rows[0]["params"] and rows[1]["flops_kept"] < 1


def _fake_imagenet(root, n_classes=2, per_class=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(n_classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")
    return root


def test_imagenet_folder_run_measures_top1_on_val(tmp_path):
    """random weights: shape check on a tiny ImageNet-layout folder (top-1 is computed, meaningless)."""
    root = _fake_imagenet(tmp_path / "imagenet")
    rows = run_channel_study("mobilenet_v2", ["mp"], [0.5], pretrained=False, imagenet_dir=root, calib_n=4,
                             input_size=32, progress=False)
    assert all(isinstance(r["top1"], float) and 0 <= r["top1"] <= 1 for r in rows)
    assert rows[0]["eval_n"] == 6 and rows[0]["calib_n"] == 4 and rows[0]["latency_ms"] is None
    assert all(r["label"] == RANDOM_LABEL for r in rows)


def test_pretrained_imagenet_model_without_dir_names_the_key():
    with pytest.raises(ReproError, match=r"vision\.imagenet_dir is not set.*--random-weights"):
        run_channel_study("resnet50", ["osscar"], [0.5], pretrained=True, progress=False)
    with pytest.raises(ReproError, match="not structured pruning methods"):
        run_channel_study("digits-resnet", ["gptq"], [0.5], progress=False)
    with pytest.raises(ReproError, match="sparsity 1.0"):
        run_channel_study("digits-resnet", ["mp"], [1.0], progress=False)


def test_cli_vision_writes_csv_and_layer_log(tmp_path, capsys):
    out, log = tmp_path / "r.csv", tmp_path / "layers.csv"
    rc = main(["vision", "--model", "digits-resnet", "--methods", "mp", "--sparsities", "0.3", "--out", str(out),
               "--layer-log", str(log), "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["dense", "mp"] and list(rows[0]) == list(COLUMNS)
    assert float(rows[0]["top1"]) >= 0.95 and not math.isnan(float(rows[1]["flops_kept"]))
    assert len(list(csv.DictReader(log.open()))) == 3
    assert "| method |" in capsys.readouterr().out
    assert main(["vision", "--model", "resnet50", "--out", str(tmp_path / "x.csv"), "--imagenet-dir",
                 str(tmp_path / "missing"), "--quiet"]) == 2
    assert "vision.imagenet_dir" in capsys.readouterr().err
