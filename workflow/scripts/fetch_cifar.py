from pathlib import Path

from _common import start

sm = snakemake  # noqa: F821
start(sm, torch=False)
from reprise.io import write_json  # noqa: E402
from reprise.provenance import provenance, sha256_file  # noqa: E402
from reprise.vision.cifar import CIFAR_ARCHIVES, fetch_cifar  # noqa: E402

spec = CIFAR_ARCHIVES[sm.params.dataset]
path = fetch_cifar(sm.params.dataset, Path(sm.output.archive).parent)
if path != Path(sm.output.archive):
    raise SystemExit(f"fetch_cifar wrote {path}, the rule expects {sm.output.archive}")
write_json(sm.output.record, provenance(stage="fetch", dataset=sm.params.dataset, url=spec["url"], md5=spec["md5"],
                                        sha256=sha256_file(path)))
