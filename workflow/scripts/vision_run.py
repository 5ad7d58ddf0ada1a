from _common import start

sm = snakemake  # noqa: F821
start(sm)
from reprise.vision.study import LAYER_COLUMNS, run_channel_study, write_csv  # noqa: E402

spec = sm.params.spec
layer_log: list = []
rows = run_channel_study(sm.wildcards.model, spec.methods, spec.sparsities, seed=int(sm.wildcards.seed),
                         calib_n=sm.params.calib_n, imagenet_dir=sm.params.imagenet_dir, eval_n=sm.params.eval_n,
                         threads=sm.threads, layer_log=layer_log)
write_csv(layer_log, sm.output.layers, columns=LAYER_COLUMNS)
write_csv(rows, sm.output.rows)  # last: its presence marks the job finished
