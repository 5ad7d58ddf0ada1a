from _common import start

start(snakemake)  # noqa: F821
from reprise.llm.data.cloze import build_enwiki_cloze  # noqa: E402

build_enwiki_cloze(snakemake.input.raw, snakemake.output[0])  # noqa: F821
