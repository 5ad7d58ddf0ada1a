# Shared state: registries, manifests, and the path functions every rule uses. Everything here is
# checked before any job starts, so a wrong key fails in seconds, not after an hour of solves.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))  # a checkout works without `pip install -e`

from reprise.io import ReproError
from reprise.llm.data import TEST_SETS, dataset_key, load_registry, spec_file_name
from reprise.llm.eval.zeroshot import packaged_tasks
from reprise.llm.models import load_model_registry
from reprise.metrics import eval_stem, ppl_metric
from reprise.papers import DENSE, load_manifest, method_config, plan, required_metrics, targets
from reprise.papers.cost import benchmark_file, experiment_job_files, job_files
from reprise.papers.experiment_study import experiment_jobs, runs_at
from reprise.papers.plan import run_blocks, run_calibrations, run_metrics
from reprise.resources import (ZEROSHOT_TOKENS, Shape, compress_mem_mb, compress_runtime_min, eval_mem_mb,
                               eval_runtime_min, eval_tokens, layer_study_mem_mb, layer_study_runtime_min, speed_mem_mb,
                               speed_runtime_min, vision_mem_mb, vision_runtime_min, wants_gpu)
from reprise.workflow_checks import check_config

MODELS = load_model_registry(config["registries"]["models"])
DATASETS = load_registry(config["registries"]["datasets"])
MANIFESTS = {
    paper: load_manifest(Path(config["registries"]["manifests"]) / f"{paper}.yaml") for paper in config["papers"]
}
check_config(config, MODELS, DATASETS, MANIFESTS)
PACKAGED_TASKS = packaged_tasks()  # lm-eval tasks shipped with reprise (e.g. alps_lambada)
DATASET_BY_KEY = {dataset_key(name, DATASETS): name for name in DATASETS}
SCALE = config["scale"]
CAL = config["calibration"]
EV = config["eval"]


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    method=r"[A-Za-z0-9_-]+",
    setting=r"[A-Za-z0-9._:-]+",
    seed=r"\d+",
    testset=r"[A-Za-z0-9-]+",
    task=r"[A-Za-z0-9_-]+",
    paper=r"[A-Za-z0-9_-]+",


def model_dir(model):
    return f"models/{model}"


def tokenizer_key(model):
    return MODELS[model].tokenizer_key


def raw_dir(dataset):
    return f"data/raw/{dataset_key(dataset, DATASETS)}"


def calib_spec(seed, cal=None):
    """The calibration token file's spec: the scale's draw (or ``cal``, a paper's own) at ``seed``."""
    cal = cal or CAL
    return {"dataset": cal["dataset"], "role": "calibration", "split": cal["split"], "protocol": cal["protocol"],
            "n": cal["n"], "seqlen": cal["seqlen"], "seed": int(seed)}


def run_calib_spec(wc):
    """The calibration of one run: its paper's papers.<paper>.calibration, else the scale's."""
    return calib_spec(wc.seed, RUN_CALIBRATION.get((wc.model, wc.method, wc.setting, int(wc.seed))))


def test_spec(testset):
    return {"test_set": testset, "seqlen": EV["seqlen"], "max_windows": EV.get("max_windows")}


def tokens_path(model, spec):
    dataset = spec.get("dataset") or TEST_SETS[spec["test_set"]]["dataset"]
    return f"data/tokens/{tokenizer_key(model)}/{dataset_key(dataset, DATASETS)}/{spec_file_name(spec)}"


def run_dir(model, method, setting, seed):
    return f"runs/{model}/{method}/{setting}/s{seed}"


def evaluated_model_dir(wc):
    """Dense rows evaluate the materialised model itself; others their compressed checkpoint."""
    if wc.method == DENSE:
        return model_dir(wc.model)
    return f"{run_dir(wc.model, wc.method, wc.setting, wc.seed)}/model"


def eval_file(model, method, setting, seed, metric):
    """The JSON file that holds ``metric`` for one run."""
    return f"{run_dir(model, method, setting, seed)}/eval/{eval_stem(metric)}.json"


def benchmark_path(stem):
    """The wildcard pattern of a run's benchmark file, laid out as reprise.papers.cost reads it back."""
    return str(benchmark_file(run_dir("{model}", "{method}", "{setting}", "{seed}"), stem))


def target_inputs(paper, target):
    manifest = MANIFESTS[paper]
    metrics = required_metrics(manifest, target, config)
    files = set()
    for cell in plan(manifest, config, target):
        for metric in metrics:
            files.add(eval_file(cell.model, cell.method, cell.setting, cell.seed, metric))
        if cell.method != DENSE:  # also for targets that read no eval metric (runtime, per-layer error)
            files.add(f"{run_dir(cell.model, cell.method, cell.setting, cell.seed)}/solve_log.csv")
    return sorted(files)


def cost_inputs(paper):
    """Every job's benchmark file and the provenance it wrote, for the paper's cost tables."""
    files = set()
    for _stage, _job, bench, source in job_files("runs", run_metrics(MANIFESTS[paper], config)):
        files.update((str(bench), str(source)))
    for _job, bench, source in experiment_job_files("runs", paper, experiment_jobs(MANIFESTS[paper], config)):
        files.update((str(bench), str(source)))
    return sorted(files)


def cost_files(paper):
    return [f"results/papers/{paper}/{name}" for name in ("cost.csv", "cost_jobs.csv", "cost.png")]


def target_files(paper, target):
    manifest = MANIFESTS[paper]
    base = f"results/papers/{paper}/{target}"
    if target in manifest.tables:
        return [f"{base}.csv", f"{base}.md", f"{base}.tex"]
    return [f"{base}.png", f"{base}.pdf"]


def study_files(paper, study):
    """A layer or vision study's outputs: a table, or a figure (admm_convergence)."""
    base = f"results/papers/{paper}/{study}"
    layer = MANIFESTS[paper].layer_studies.get(study)
    if layer is not None and layer.is_figure:
        return [f"{base}.png", f"{base}.pdf"]
    return [f"{base}.csv", f"{base}.md", f"{base}.tex"]


def all_targets():
    files = []
    for paper, manifest in MANIFESTS.items():
        for target in targets(manifest):
            files += target_files(paper, target)
        for study in [*manifest.layer_studies, *manifest.vision_studies]:
            files += study_files(paper, study)
        for experiment in manifest.experiments:
            if not runs_at(manifest, experiment, config):  # e.g. real data at full scale only
                continue
            base = f"results/papers/{paper}/{experiment}"
            exts = (".png", ".pdf") if manifest.experiments[experiment].is_figure else (".csv", ".md", ".tex")
            files += [base + ext for ext in exts]
        files.append(f"results/papers/{paper}/report.md")
        files += cost_files(paper)
    return files


def run_config(method, setting):
    return method_config(list(MANIFESTS.values()), method, setting)


RUN_BLOCKS = run_blocks(MANIFESTS.values(), config)  # papers.<paper>.blocks per planned run
RUN_CALIBRATION = run_calibrations(MANIFESTS.values(), config)  # papers.<paper>.calibration per planned run


def run_driver(wc):
    """The driver config of one compress job: the global one, with its paper's block slice."""
    run = (wc.model, wc.method, wc.setting, int(wc.seed))
    return {**config["driver"], "blocks": RUN_BLOCKS.get(run, config["driver"].get("blocks"))}


# Resources from the work (reprise.resources): every figure follows the model's size, the token
# counts and the method, and grows on each retry (`attempt`). Smoke asks for the CPU only.
GPU = 1 if wants_gpu(config) else 0
THREADS = config["threads"]


def shape(model):
    return Shape.of(MODELS[model])


def compress_mem(wc, attempt):
    return compress_mem_mb(shape(wc.model), CAL["n"], CAL["seqlen"], wc.method, attempt)


def compress_runtime(wc, attempt):
    return compress_runtime_min(shape(wc.model), CAL["n"], CAL["seqlen"], wc.method, GPU > 0, THREADS, attempt,
                                run_config(wc.method, wc.setting))


def eval_mem(wc, attempt):
    return eval_mem_mb(shape(wc.model), EV["seqlen"], EV.get("batch_size", 1), attempt)


def eval_runtime(wc, attempt):
    return eval_runtime_min(shape(wc.model), eval_tokens(EV), GPU > 0, THREADS, attempt)


SPEED = EV.get("speed", {})


def speed_mem(wc, attempt):
    return speed_mem_mb(shape(wc.model), int(wc.seqlen), int(wc.batch), attempt)


def speed_runtime(wc, attempt):
    passes = SPEED.get("warmup", 2) + SPEED.get("repeats", 10)
    return speed_runtime_min(shape(wc.model), int(wc.seqlen), int(wc.batch), passes, GPU > 0, THREADS, attempt)


def zeroshot_runtime(wc, attempt):
    return eval_runtime_min(shape(wc.model), ZEROSHOT_TOKENS, GPU > 0, THREADS, attempt)


def model_prep_mem(wc, attempt):
    return eval_mem_mb(shape(wc.model), 512, 1, attempt)


def light_mem(wc, attempt):
    """Data, tokenizer and rendering jobs: no model weights in memory."""
    return 2000 * attempt


def light_runtime(wc, attempt):
    return 15 * attempt
