from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.papers.experiment_study import read_rows, render_experiment  # noqa: E402
from reprise.papers.manifest import load_manifest  # noqa: E402

manifest = load_manifest(sm.params.manifest)
render_experiment(manifest, sm.params.target, sm.config, read_rows(sm.input), sm.output[0].rsplit(".", 1)[0])
