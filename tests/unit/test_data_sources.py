"""fetch_raw: local and offline corpora, hashes, atomicity; the hub path offline and with a stand-in."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import pytest

from reprise.io import ReproError
from reprise.llm.data import DEFAULT_REGISTRY, fetch_raw, load_registry, read_manifest, read_split, sha256_file
from reprise.llm.data import sources
from reprise.llm.data.registry import _check_entry


@pytest.fixture(scope="module")
def registry():
    return load_registry(DEFAULT_REGISTRY)


@pytest.fixture(scope="module")
def enwiki_raw(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("raw") / "local-enwiki-gensim"
    fetch_raw("enwiki-gensim", registry, out)
    return out


def test_enwiki_manifest_and_hashes(enwiki_raw):
    manifest = read_manifest(enwiki_raw)
    assert manifest["key"] == "local-enwiki-gensim" and manifest["pinned"]
    assert manifest["source"]["package"].startswith("gensim==")
    splits = manifest["splits"]
    assert splits["train"]["n_docs"] + splits["test"]["n_docs"] == 106  # articles, offline-assets §3a
    assert splits["test"]["n_docs"] == 10
    for split, info in splits.items():
        assert sha256_file(enwiki_raw / f"{split}.jsonl") == info["sha256"]
    docs, digest = read_split(enwiki_raw, "test")
    assert digest == splits["test"]["sha256"] and len(docs) == 10
    assert docs[0].startswith(" = ") and "'''" not in "".join(docs) and "[[" not in "".join(docs)


def test_enwiki_calibration_and_test_parts_are_disjoint(enwiki_raw):
    train, _ = read_split(enwiki_raw, "train")
    test, _ = read_split(enwiki_raw, "test")
    titles = lambda docs: {d.split(" = ")[1] for d in docs}  # noqa: E731
    assert not titles(train) & titles(test)
    assert not set(train) & set(test)
    assert len(titles(train)) == len(train) and "Anarchism" in titles(train)


def test_fetch_is_atomic_when_the_parser_fails(registry, tmp_path, monkeypatch):
    def broken(path):
        raise ReproError("parser exploded")

    monkeypatch.setattr(sources, "read_wiki_articles", broken)
    out = tmp_path / "raw" / "local-enwiki-gensim"
    with pytest.raises(ReproError, match="exploded"):
        fetch_raw("enwiki-gensim", registry, out)
    assert not out.exists() and list((tmp_path / "raw").iterdir()) == []


def test_pinned_hash_mismatch_is_refused(registry, tmp_path):
    entry = registry["lee-gensim"]
    bad = _check_entry("lee-gensim", {**entry.options, "sha256": {"test": "0" * 64}}, "test")
    with pytest.raises(ReproError, match="pins"):
        fetch_raw("lee-gensim", {"lee-gensim": bad}, tmp_path / "lee")
    assert not (tmp_path / "lee").exists()


def test_local_file_kinds(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nthird line\n")
    with gzip.open(tmp_path / "b.json.gz", "wt") as fh:
        fh.write(json.dumps({"body": "doc one"}) + "\n" + json.dumps({"body": "doc two"}) + "\n")
    reg = {
        "txt": _check_entry("txt", {"kind": "local-file", "files": {"test": str(tmp_path / "a.txt")}}, "t"),
        "gz": _check_entry("gz", {"kind": "local-file", "field": "body",
                                  "files": {"validation": str(tmp_path / "b.json.gz")}}, "t"),
    }
    fetch_raw("txt", reg, tmp_path / "out-txt")
    assert read_split(tmp_path / "out-txt", "test")[0] == ["first line", "", "third line"]
    fetch_raw("gz", reg, tmp_path / "out-gz")
    assert read_split(tmp_path / "out-gz", "validation")[0] == ["doc one", "doc two"]
    assert read_manifest(tmp_path / "out-gz")["source"]["sha256"]["validation"] == sha256_file(tmp_path / "b.json.gz")
    with pytest.raises(ReproError, match="no split 'train'"):
        read_split(tmp_path / "out-gz", "train")
    (tmp_path / "out-gz" / "validation.jsonl").write_text('{"text": "tampered"}\n')
    with pytest.raises(ReproError, match="modified"):
        read_split(tmp_path / "out-gz", "validation")


def test_hub_path_calls_load_dataset_with_the_pin(registry, tmp_path, monkeypatch):
    """The hub code path, run against an in-memory stand-in for the hub."""
    import datasets

    calls = []

    def fake_load(path, name=None, **kw):
        calls.append((path, name, kw))
        return datasets.Dataset.from_dict({"text": [f"{kw['split']} row {i}" for i in range(3)] + [None]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    manifest = fetch_raw("c4-val", registry, tmp_path / "c4")
    path, name, kw = calls[0]
    assert path == "allenai/c4" and name is None
    assert kw == {"revision": registry["c4-val"].options["revision"], "split": "validation",
                  "data_files": {"validation": "en/c4-validation.00000-of-00008.json.gz"}}
    assert manifest["revision"] == kw["revision"] and manifest["splits"]["validation"]["n_docs"] == 4
    assert read_split(tmp_path / "c4", "validation")[0][-1] == ""

    fetch_raw("wikitext2", registry, tmp_path / "wt")
    assert calls[-1][:2] == ("Salesforce/wikitext", "wikitext-2-raw-v1")
    assert [c[2]["split"] for c in calls[1:]] == ["train", "test"]
    with pytest.raises(ReproError, match="no column 'sentence'"):
        fetch_raw("ptb", registry, tmp_path / "ptb")
    assert not (tmp_path / "ptb").exists()


def test_hub_offline_fails_clearly_in_process(registry, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE set after huggingface_hub was imported is still honoured."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = hc.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(ReproError) as err:
        fetch_raw("wikitext2", registry, tmp_path / "wt")
    assert time.monotonic() - start < 30
    msg = str(err.value)
    assert "'wikitext2'" in msg and "offline" in msg and "local-file" in msg
    assert hc.HF_HUB_OFFLINE == before and not (tmp_path / "wt").exists()


def test_hub_offline_fails_clearly_in_a_fresh_process(tmp_path):
    code = ("from reprise.llm.data import *\nfrom reprise.io import ReproError\n"
            "try:\n  fetch_raw('c4-val', load_registry(DEFAULT_REGISTRY), %r)\n"
            "except ReproError as e:\n  print('REPRO', e)\n" % str(tmp_path / "c4"))
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "HF_HOME": str(tmp_path / "hf")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "REPRO dataset 'c4-val'" in res.stdout, res.stderr[-2000:]
    assert not (tmp_path / "c4").exists()
