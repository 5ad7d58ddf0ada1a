# Experiments of the sparse-learning papers (manifest `experiments`, reprise.experiments): one job
# per (paper, experiment, seed) runs the registered function with the scale's params and writes
# its rows; one named target per experiment renders them as a table or figure
# (e.g. `snakemake graphl0_tab1`). Resources come from the manifest's runtime_min / mem_mb / gpu;
# its `inputs` (fetched data at full scale) become the job's inputs. An experiment with `split_by`
# runs one job per part and seed instead (experiment_part_run), so a long grid fits a cluster's
# time limit and a failed part reruns alone.
from reprise.papers.experiment_study import PART_NAME, experiment_jobs, experiment_params
from reprise.resources import experiment_mem_mb, experiment_runtime_min


def _experiment(wc):
    return MANIFESTS[wc.paper].experiments[wc.experiment]


def _part(wc):
    return wc.get("part")  # None: an unsplit experiment's job


def experiment_mem(wc, attempt):
    return experiment_mem_mb(_experiment(wc).mem_at(SCALE), attempt)


def experiment_gpu(wc):
    # a GPU only where the manifest asks for one at this scale and the driver is not pinned to the CPU
    return _experiment(wc).gpus_at(SCALE) if GPU else 0


def experiment_runtime(wc, attempt):
    return experiment_runtime_min(_experiment(wc).runtime_at(SCALE), attempt)


rule experiment_run:
    input:
        lambda wc: _experiment(wc).inputs_at(SCALE, _part(wc)),  # fetched data (manifest `inputs`); none at smoke
    output:
        provenance="runs/experiments/{paper}/{experiment}_s{seed}.json",
        rows="runs/experiments/{paper}/{experiment}_s{seed}.csv",
    wildcard_constraints:
        experiment=r"[A-Za-z0-9_-]+",
    params:
        kind=lambda wc: _experiment(wc).kind,
        params=lambda wc: experiment_params(MANIFESTS[wc.paper], wc.experiment, config, _part(wc)),
    log:
        "logs/experiments/{paper}/{experiment}_s{seed}.log",
    benchmark:
        "runs/experiments/{paper}/benchmark/{experiment}_s{seed}.tsv"
    threads: 1
    resources:
        mem_mb=experiment_mem,
        runtime=experiment_runtime,
        gpu=experiment_gpu,
    conda:
        "../../envs/llm.yaml"
    script:
        "../scripts/experiment_run.py"


use rule experiment_run as experiment_part_run with:
    output:
        provenance="runs/experiments/{paper}/{experiment}/{part}_s{seed}.json",
        rows="runs/experiments/{paper}/{experiment}/{part}_s{seed}.csv",
    wildcard_constraints:
        experiment=r"[A-Za-z0-9_-]+",
        part=PART_NAME,
    log:
        "logs/experiments/{paper}/{experiment}/{part}_s{seed}.log",
    benchmark:
        "runs/experiments/{paper}/benchmark/{experiment}/{part}_s{seed}.tsv"


def experiment_inputs(paper, experiment):
    """The rows files of every job ``experiment`` renders (rows_from: another experiment's jobs)."""
    return [str(j.rows_file("runs", paper)) for j in experiment_jobs(MANIFESTS[paper], config, only=experiment)]


def experiment_targets(paper):
    """The output files of every experiment target of ``paper``."""
    return [f for e in MANIFESTS[paper].experiments for f in experiment_outputs(paper, e)]


def experiment_outputs(paper, experiment):
    base = f"results/papers/{paper}/{experiment}"
    if MANIFESTS[paper].experiments[experiment].is_figure:
        return [f"{base}.png", f"{base}.pdf"]
    return [f"{base}.csv", f"{base}.md", f"{base}.tex"]


for _paper, _manifest in MANIFESTS.items():
    for _exp in _manifest.experiments:

        rule:
            name:
                f"{_paper}_{_exp}"
            input:
                experiment_inputs(_paper, _exp),
            output:
                experiment_outputs(_paper, _exp),
            params:
                paper=_paper,
                target=_exp,
                manifest=f"{config['registries']['manifests']}/{_paper}.yaml",
            log:
                f"logs/papers/{_paper}/{_exp}.log",
            localrule: True
            threads: 1
            resources:
                mem_mb=light_mem,
                runtime=light_runtime,
            conda:
                "../../envs/papers.yaml"
            script:
                "../scripts/experiment_render.py"
