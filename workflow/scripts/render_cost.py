from pathlib import Path

from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.papers.render import render_paper_cost  # noqa: E402

render_paper_cost(sm.params.manifest, sm.config, "runs", Path(sm.output[0]).parent)
