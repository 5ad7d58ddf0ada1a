from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.papers.manifest import load_manifest  # noqa: E402
from reprise.papers.vision_study import read_rows, render_vision_study  # noqa: E402

manifest = load_manifest(sm.params.manifest)
render_vision_study(manifest, sm.params.target, sm.config, read_rows(sm.input), sm.output[0].rsplit(".", 1)[0])
