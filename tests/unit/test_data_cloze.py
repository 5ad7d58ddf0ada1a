"""enwiki-cloze: items from the held-out part only, deterministic, and a task lm-eval can find."""
from __future__ import annotations

import json

import pytest
import yaml

from reprise.io import ReproError
from reprise.llm.data import DEFAULT_REGISTRY, build_enwiki_cloze, cloze_items, fetch_raw, load_registry, read_split


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "local-enwiki-gensim"
    fetch_raw("enwiki-gensim", load_registry(DEFAULT_REGISTRY), out)
    return out


def test_items_are_valid_and_held_out(raw):
    test, _ = read_split(raw, "test")
    train, _ = read_split(raw, "train")
    items = cloze_items(test, seed=0, exclude=train)
    assert len(items) >= 500
    train_text, test_text = "\n".join(train), "\n".join(test)
    assert len(cloze_items(test, seed=0, min_items=0)) > len(items)  # some sentences recur across articles
    for it in items:
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
        assert it["choices"][it["answer"]] == it["target"]
        assert it["target"].isalpha() and it["target"].islower() and len(it["target"]) >= 4
        assert f"{it['context']} {it['target']}." in test_text
        assert f"{it['context']} {it['target']}." not in train_text
    answers = [it["answer"] for it in items]
    assert all(answers.count(k) > len(items) / 8 for k in range(4))  # answer positions are spread


def test_items_are_deterministic(raw):
    test, _ = read_split(raw, "test")
    assert cloze_items(test, seed=0) == cloze_items(test, seed=0)
    assert cloze_items(test, seed=0) != cloze_items(test, seed=1)
    assert len(cloze_items(test, n_items=50, min_items=10)) == 50
    with pytest.raises(ReproError, match="fewer than the"):
        cloze_items(test[:1], min_items=500)


def test_written_task_is_found_by_lm_eval(raw, tmp_path):
    summary = build_enwiki_cloze(raw, tmp_path / "tasks", n_items=600)
    assert summary["n_items"] == 600 and summary["raw_sha256"]["test"]
    spec = yaml.safe_load((tmp_path / "tasks" / "enwiki-cloze.yaml").read_text())
    assert spec["task"] == "enwiki-cloze" and spec["dataset_path"] == "json"
    assert spec["output_type"] == "multiple_choice" and spec["metadata"]["version"] == 1.0
    assert [m["metric"] for m in spec["metric_list"]] == ["acc", "acc_norm"]
    lines = (tmp_path / "tasks" / "enwiki-cloze.jsonl").read_text().splitlines()
    assert spec["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "tasks" / "enwiki-cloze.jsonl").resolve())
    assert len(lines) == 600 and set(json.loads(lines[0])) == {"context", "choices", "answer", "target"}
    from lm_eval.tasks import TaskManager

    assert "enwiki-cloze" in TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False).all_tasks
