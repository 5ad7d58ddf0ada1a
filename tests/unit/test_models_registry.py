"""Model specs resolve from every kind of source, and the hub path fails clearly when offline."""
from __future__ import annotations

import pytest

from conftest import REPO
from reprise.io import ReproError
from reprise.llm.models import ModelSpec, load_model, load_model_registry, resolve_spec


def test_registry_entries_and_pins():
    reg = load_model_registry(REPO / "config" / "models.yaml")
    assert reg["smollm2-135m"].source == "gguf" and reg["smollm2-135m"].pinned
    assert reg["tiny-llama"].tokenizer_key == "smollm2-135m"
    assert not reg["opt-125m"].pinned  # `main` is reported as unpinned, never silently trusted


def test_resolve_directory_gguf_and_hub_id(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_spec(str(tmp_path / "m")).source == "local"
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert resolve_spec(str(tmp_path / "x.gguf")).source == "gguf"
    hub = resolve_spec("facebook/opt-125m@" + "a" * 40)
    assert hub.source == "hub" and hub.pinned and hub.key == "facebook--opt-125m@aaaaaaaaaaaa"
    assert not resolve_spec("facebook/opt-125m").pinned


@pytest.mark.parametrize("name, message", [
    ("no-such-key", "unknown model"),
    ("relative/dir/that/is/missing/", "unknown model"),
    ("missing.gguf", "not found"),
])
def test_unresolvable_names_are_refused(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReproError, match=message):
        resolve_spec(name, {})


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ReproError, match="config.json"):
        resolve_spec(str(tmp_path))


def test_bad_registry_key_is_named(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("m: {source: hub, id: a/b, revison: main}\n")
    with pytest.raises(ReproError, match="revison"):
        load_model_registry(bad)


def test_hub_load_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    spec = ModelSpec(key="opt", source="hub", id="facebook/opt-125m", revision="main")
    with pytest.raises(ReproError, match="HF_HUB_OFFLINE=1"):
        load_model(spec)
