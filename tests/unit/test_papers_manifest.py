"""Manifest loading: schema and cross-reference errors name the file, the key path and the fix."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from reprise.io import ReproError
from reprise.papers import DENSE, load_manifest, manifest_from_data, sparsity_setting

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "config" / "papers" / "baselines.yaml"


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(BASELINES.read_text())


def build(data, path="baselines.yaml"):
    return manifest_from_data(data, path)


def error_of(data) -> str:
    with pytest.raises(ReproError) as exc:
        build(data)
    return str(exc.value)


def test_baselines_loads_and_is_consistent():
    m = load_manifest(BASELINES)
    assert m.paper == "baselines"
    assert set(m.tables) == {"quant", "prune"} and set(m.figures) == {"ppl_vs_sparsity"}
    rows = {t: {r.key for r in table.rows} for t, table in m.tables.items()}
    for p in m.published:
        assert p.source in m.sources
        assert f"{p.method}/{p.setting}" in rows[p.table]
        assert (p.value is None) or (p.tolerance is not None and (p.tolerance.rel or p.tolerance.abs))
    # seqlen is part of the metric name: the Wanda README values are never stored under @2048
    wanda_src = [p for p in m.published if p.source == "wanda-readme"]
    assert wanda_src and all(p.metric == "wikitext2_ppl@4096" for p in wanda_src)
    # dense cells carry the absolute ±0.02 gate, the others a relative one
    for p in m.published:
        if p.value is not None and p.method == DENSE:
            assert p.tolerance.abs == pytest.approx(0.02) and p.tolerance.rel is None
    # "verify" cells are null with a note
    unknown = [p for p in m.published if p.value is None and p.metric == "wikitext2_ppl@2048"]
    assert unknown and all(p.note for p in unknown)


def test_manifest_is_frozen():
    m = load_manifest(BASELINES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.paper = "other"
    with pytest.raises(TypeError):
        m.settings[("gptq", "w4")] = {}
    cfg = m.config("gptq", "w4")
    cfg["bits"] = 99  # a copy: the manifest is unchanged
    assert m.config("gptq", "w4")["bits"] == 4


def test_unknown_top_level_key(raw):
    data = copy.deepcopy(raw)
    data["tabels"] = {}
    msg = error_of(data)
    assert "baselines.yaml" in msg and "tabels" in msg and "Fix:" in msg


def test_unknown_nested_key_names_its_path(raw):
    data = copy.deepcopy(raw)
    data["tables"]["quant"]["rows"][1]["lable"] = "typo"
    msg = error_of(data)
    assert "tables.quant.rows[1].lable" in msg and "allowed keys" in msg


@pytest.mark.parametrize("tol", [{"rel": -0.1}, {"rel": 2.0}, {}, {"relative": 0.02}, {"abs": "0.02"}])
def test_bad_tolerance(raw, tol):
    data = copy.deepcopy(raw)
    data["published"][1]["tolerance"] = tol
    assert "published[1].tolerance" in error_of(data)


def test_value_without_tolerance(raw):
    data = copy.deepcopy(raw)
    del data["published"][1]["tolerance"]
    msg = error_of(data)
    assert "published[1].tolerance" in msg and "needs a tolerance" in msg


def test_published_unknown_table(raw):
    data = copy.deepcopy(raw)
    data["published"][0]["table"] = "table9"
    msg = error_of(data)
    assert "published[0].table" in msg and "table9" in msg and "quant" in msg


def test_published_unknown_setting(raw):
    data = copy.deepcopy(raw)
    data["published"][1]["values"]["opt-125m"]["gptq/w9"] = 30.0
    msg = error_of(data)
    assert "published[1].values.opt-125m.gptq/w9" in msg


def test_published_unknown_source(raw):
    data = copy.deepcopy(raw)
    data["published"][0]["source"] = "nowhere"
    assert "published[0].source" in error_of(data)


def test_row_with_undeclared_setting(raw):
    data = copy.deepcopy(raw)
    data["tables"]["quant"]["rows"].append({"method": "gptq", "setting": "w2", "label": "GPTQ 2-bit"})
    msg = error_of(data)
    assert "tables.quant.rows[5].setting" in msg and "settings.gptq.w2" in msg


def test_duplicate_published_value(raw):
    data = copy.deepcopy(raw)
    data["published"].append(copy.deepcopy(data["published"][0]))
    assert "a second value" in error_of(data)


def test_unquoted_nm_and_unsigned_exponent_get_a_hint(tmp_path, raw):
    text = BASELINES.read_text().replace('nm2-4: {nm: "2:4"}', "nm2-4: {nm: 2:4}", 1)
    (tmp_path / "baselines.yaml").write_text(text)
    with pytest.raises(ReproError, match=r"settings\.magnitude\.nm2-4\.nm.*quote"):
        load_manifest(tmp_path / "baselines.yaml")
    text = BASELINES.read_text().replace("rtn/w3: 1300}", "rtn/w3: 1.3e3}", 1)
    (tmp_path / "baselines.yaml").write_text(text)
    with pytest.raises(ReproError, match=r"rtn/w3.*1\.3e\+3"):
        load_manifest(tmp_path / "baselines.yaml")


def test_file_name_must_match_paper_id(tmp_path):
    (tmp_path / "other.yaml").write_text(BASELINES.read_text())
    with pytest.raises(ReproError, match=r"other\.yaml at paper"):
        load_manifest(tmp_path / "other.yaml")


def test_wrong_format_version(raw):
    data = copy.deepcopy(raw)
    data["format"] = 2
    assert "format: 1" in error_of(data)


def test_figure_grid_conflicting_setting(raw):
    data = copy.deepcopy(raw)
    data["settings"]["wanda"]["sp50"] = {"sparsity": 0.4}
    msg = error_of(data)
    assert "settings.wanda.sp50" in msg and "ppl_vs_sparsity" in msg


def test_figure_grid_settings_are_derived(raw):
    m = build(copy.deepcopy(raw))
    for method in m.figures["ppl_vs_sparsity"].methods:
        for s in m.figures["ppl_vs_sparsity"].sparsities:
            assert m.config(method, sparsity_setting(s))["sparsity"] == pytest.approx(s)
    assert sparsity_setting(0.3) == "sp30" and sparsity_setting(0.375) == "sp37p5"


def test_dense_setting_takes_no_config(raw):
    data = copy.deepcopy(raw)
    data["settings"]["dense"] = {"dense": {"bits": 4}}
    assert "settings.dense.dense" in error_of(data)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ReproError, match="not found"):
        load_manifest(tmp_path / "baselines.yaml")
    (tmp_path / "baselines.yaml").write_text("paper: [unclosed\n")
    with pytest.raises(ReproError, match="not valid YAML"):
        load_manifest(tmp_path / "baselines.yaml")


def test_papers_package_never_imports_solvers():
    # tables render results; they do not solve (DESIGN.md, dependency rules)
    import ast

    for f in (ROOT / "src" / "reprise" / "papers").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.startswith(("reprise.llm", "torch")) for n in names), (f, names)
