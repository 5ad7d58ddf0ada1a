from pathlib import Path

from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.io import write_json  # noqa: E402
from reprise.provenance import provenance  # noqa: E402
from reprise.trees.datasets import fetch_pmlb, pmlb_url  # noqa: E402

digests = fetch_pmlb(sm.params.name, Path(sm.output.data).parent, sha256=sm.params.sha256)
write_json(sm.output.record, provenance(stage="fetch", source=pmlb_url(sm.params.name), sha256=digests["data"],
                                        metadata_sha256=digests["metadata"], pinned_sha256=sm.params.sha256))
