from _common import start

sm = snakemake  # noqa: F821
pipeline = start(sm)
from reprise.llm.data import read_split  # noqa: E402

docs, _ = read_split(sm.input.corpus, sm.params.corpus_split)
text = "\n\n".join(docs)[:300_000]  # enough text to expose any fast/slow tokenizer difference
pipeline.prepare_model(sm.wildcards.model, sm.params.registry, sm.output[0], corpus_text=text)
