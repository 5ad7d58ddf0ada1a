from _common import start

sm = snakemake  # noqa: F821
start(sm)
from reprise.llm.experiments import run_layer_study  # noqa: E402
from reprise.papers.layer_study import render_study  # noqa: E402
from reprise.papers.manifest import load_manifest  # noqa: E402

manifest = load_manifest(sm.params.manifest)
result = run_layer_study(manifest.layer_studies[sm.params.target], sm.input.layer, device=sm.params.device)
render_study(manifest, sm.params.target, sm.config, result, sm.output[0].rsplit(".", 1)[0])
