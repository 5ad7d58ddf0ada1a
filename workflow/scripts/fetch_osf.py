from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
import reprise.mtl.data as data  # noqa: E402
from reprise.io import write_json  # noqa: E402
from reprise.provenance import provenance, sha256_file  # noqa: E402

path = getattr(data, sm.params.fetch)(sm.output.archive, sha256=sm.params.sha256)
write_json(sm.output.record, provenance(stage="fetch", source=sm.params.fetch, sha256=sha256_file(path),
                                        pinned_sha256=sm.params.sha256))
