"""Dataset registry: validation errors name the key and the file; dataset keys are declared."""
from __future__ import annotations

import pytest

from reprise.io import ReproError
from reprise.llm.data import DEFAULT_REGISTRY, dataset_key, load_registry


def write(tmp_path, text):
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def test_shipped_registry_is_valid():
    reg = load_registry(DEFAULT_REGISTRY)
    assert {"wikitext2", "ptb", "c4-val", "c4-train", "enwiki-gensim", "lee-gensim"} <= set(reg)
    assert reg["wikitext2"].options["config"] == "wikitext-2-raw-v1"
    assert reg["ptb"].text_field == "sentence" and reg["ptb"].splits == ("train", "validation", "test")
    assert reg["c4-val"].options["data_files"] == {"validation": "en/c4-validation.00000-of-00008.json.gz"}
    assert reg["c4-train"].options["data_files"] == {"train": "en/c4-train.00000-of-01024.json.gz"}
    assert reg["enwiki-gensim"].splits == ("train", "test")
    for name, entry in reg.items():  # every hub entry is pinned or says why not
        if entry.kind == "hub":
            assert entry.is_pinned or entry.get("revision_note"), name


def test_dataset_keys():
    reg = load_registry(DEFAULT_REGISTRY)
    assert dataset_key("wikitext2", reg) == "Salesforce--wikitext@b08601e04326c79dfdd32d625aee71d232d685c3"
    assert dataset_key("c4-val", reg).startswith("allenai--c4@")
    assert dataset_key("ptb", reg) == "ptb-text-only--ptb_text_only@refs--convert--parquet"
    assert dataset_key("enwiki-gensim", reg) == "local-enwiki-gensim"
    with pytest.raises(ReproError, match="unknown dataset 'nope'"):
        dataset_key("nope", reg)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "mine:\n  kind: local-file\n  files: {test: x.txt}\n  splitz: [test]\n")
    with pytest.raises(ReproError) as err:
        load_registry(path)
    assert "splitz" in str(err.value) and str(path) in str(err.value) and "'mine'" in str(err.value)


@pytest.mark.parametrize("body, message", [
    ("  kind: ftp\n", "kind 'ftp'"),
    ("  kind: hub\n  path: a/b\n  splits: [test]\n", "lacks required key"),
    ("  kind: hub\n  path: a/b\n  revision: main\n  splits: [test]\n", "not a commit sha"),
    ("  kind: hub\n  path: a/b\n  revision: main\n  splits: []\n  revision_note: x\n", "non-empty list"),
    ("  kind: local-file\n  file: x.txt\n", "holdout_every"),
    ("  kind: local-file\n  file: x.txt\n  files: {test: y}\n", "exactly one of"),
    ("  kind: local-file\n  files: {test: x}\n  format: csv\n", "format 'csv'"),
])
def test_invalid_entries(tmp_path, body, message):
    path = write(tmp_path, "bad:\n" + body)
    with pytest.raises(ReproError, match=message):
        load_registry(path)


def test_unpinned_with_note_is_accepted(tmp_path):
    path = write(tmp_path, "x:\n  kind: hub\n  path: a/b\n  revision: main\n  revision_note: 'unpinned: test'\n"
                           "  splits: [test]\n")
    entry = load_registry(path)["x"]
    assert not entry.is_pinned and dataset_key("x", {"x": entry}) == "a--b@main"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ReproError, match="not found"):
        load_registry(tmp_path / "none.yaml")
    with pytest.raises(ReproError, match="not valid YAML"):
        load_registry(write(tmp_path, "a: [unclosed\n"))
    with pytest.raises(ReproError, match="must map"):
        load_registry(write(tmp_path, "- a\n- b\n"))
