"""Paper manifests, planning, and rendering of tables, figures and reproduction reports.

This package reads results; it never solves (it must not import reprise.llm.methods or the driver).
"""
from reprise.papers.manifest import (DENSE, Claim, Figure, LayerStudy, Manifest, Note, Published, Row, Source, Table, Tolerance,
                                     load_manifest, manifest_from_data, sparsity_setting)
from reprise.papers.plan import (Cell, figure_sparsities, method_config, plan, required_metrics, run_dir,
                                 scale_models, target_models, target_rows, targets, unique_runs)
from reprise.papers.results import RUNTIME, WALL, load_results, solve_seconds, summarise
from reprise.papers.tables import caption, render_table
from reprise.papers.figures import render_figure
from reprise.papers.report import (FAIL, MISSING, NOT_REGENERATED, PASS, SMOKE, VERDICTS, ReportCell, count_verdicts,
                                   render_report, report_cells, verdict)

__all__ = [
    "DENSE", "Claim", "Figure", "LayerStudy", "Manifest", "Note", "Published", "Row", "Source", "Table", "Tolerance", "load_manifest",
    "manifest_from_data", "sparsity_setting", "Cell", "figure_sparsities", "method_config", "plan",
    "required_metrics", "run_dir", "scale_models", "target_models", "target_rows", "targets", "unique_runs",
    "RUNTIME", "WALL", "load_results", "solve_seconds", "summarise", "caption", "render_table", "render_figure",
    "FAIL", "MISSING", "NOT_REGENERATED", "PASS", "SMOKE", "VERDICTS", "ReportCell", "count_verdicts",
    "render_report", "report_cells", "verdict",
]
