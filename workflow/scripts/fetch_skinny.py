from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.io import write_json  # noqa: E402
from reprise.provenance import provenance  # noqa: E402
from reprise.trees.datasets import fetch  # noqa: E402

files = fetch(sm.params.name, sm.params.root, pins=dict(sm.params.sha256))
write_json(sm.output.record, provenance(stage="fetch", dataset=sm.params.name, files=files,
                                        pinned_sha256=dict(sm.params.sha256)))
