from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.effai.movielens import URL, fetch_movielens  # noqa: E402
from reprise.io import write_json  # noqa: E402
from reprise.provenance import provenance  # noqa: E402

digests = fetch_movielens(sm.output.archive, sha256=sm.params.sha256)
write_json(sm.output.record, provenance(stage="fetch", url=URL, pinned_sha256=sm.params.sha256, **digests))
