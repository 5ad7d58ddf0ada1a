"""The ``reprise`` command: compress | evaluate | plan | targets.

    reprise compress --model <key|dir|file.gguf|org/name[@rev]> --method gptq --bits 4 --out DIR
    reprise evaluate --model DIR --testsets enwiki-gensim --seqlen 256
    reprise plan --scale full
    reprise targets
    reprise vision --model digits-resnet --methods mp,mp-plus,osscar --sparsities 0.3,0.5,0.7 --out results.csv
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reprise.io import ReproError, load_yaml

DEFAULT_CONFIG = "config/config.yaml"


def _load_config(scale: str | None, config_path: str = DEFAULT_CONFIG) -> dict[str, Any]:
    """config.yaml merged with a scale file, as snakemake --configfile merges them."""
    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    path = Path(config_path)
    if not path.is_file():
        raise ReproError(f"{path} not found: run reprise from the repository root or pass --config")
    cfg = load_yaml(path.read_text())
    if scale:
        scale_file = path.parent / "scales" / f"{scale}.yaml"
        if not scale_file.is_file():
            raise ReproError(f"no scale file {scale_file}; scales: smoke, mini, full")
        cfg = merge(cfg, load_yaml(scale_file.read_text()))
    return cfg


def _parse_kv(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ReproError(f"--set {item!r}: use key=value (value parsed as YAML)")
        out[key] = load_yaml(value)
    return out


def _raw_corpus(cache: str, name: str, datasets_file: str) -> Path:
    """``<cache>/data/raw/<dataset-key>``, fetched once (the same stage function the workflow runs)."""
    from reprise import pipeline
    from reprise.llm.data import dataset_key, load_registry

    raw = Path(cache) / "data" / "raw" / dataset_key(name, load_registry(datasets_file))
    if not (raw / "manifest.json").is_file():
        pipeline.prepare_dataset(name, datasets_file, raw)
    return raw


# ------------------------------------------------------------------------------------------ compress
def cmd_compress(args: argparse.Namespace) -> int:
    from reprise import pipeline
    from reprise.llm.methods import get_method
    from reprise.llm.models import load_model_registry, materialize, resolve_spec

    pipeline.setup(threads=args.threads)
    method = get_method(args.method)
    config = _parse_kv(args.set)
    for name in ("bits", "group_size", "sparsity", "nm"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    from reprise.llm.driver.structured import check_config, is_structured

    if is_structured(method):  # heads_sparsity / neurons_sparsity beside the solver's keys
        check_config(method, config)
    else:
        method.Config.from_dict(config)  # fail on a bad key before loading anything

    models = load_model_registry(args.models)
    spec = resolve_spec(args.model, models)
    model_dir = Path(args.cache) / "models" / spec.key
    if not (model_dir / "source.json").is_file():
        print(f"materialising {spec.key} into {model_dir}", file=sys.stderr)
        materialize(spec, model_dir, models)

    raw = _raw_corpus(args.cache, args.calib_dataset, args.datasets)
    spec_tokens = {"dataset": args.calib_dataset, "role": "calibration", "split": args.calib_split,
                   "protocol": args.calib_protocol, "n": args.calib_n, "seqlen": args.seqlen, "seed": args.seed}
    out = Path(args.out)
    calib_path = out.parent / f".{out.name}.calib.pt"
    pipeline.prepare_tokens(spec_tokens, model_dir, raw, calib_path)
    driver = {"device": args.device, "true_sequential": args.true_sequential, "gram_dtype": args.gram_dtype}
    if args.blocks:
        driver["blocks"] = [int(x) for x in args.blocks.split(":")]
    summary = pipeline.compress(model_dir, calib_path, args.method, config, out, driver=driver, dtype=args.dtype,
                                resume_dir=out.parent / f".{out.name}.resume",
                                context={"model": spec.key, "cli": True})
    calib_path.unlink(missing_ok=True)
    shown = ("method", "config", "layers", "mean_rel_err", "solve_seconds", "kept", "dense_parameters", "parameters",
             "shrunk")  # the last four for structured pruning
    print(json.dumps({k: summary[k] for k in shown if k in summary}, indent=2))
    print(f"wrote {out}/model (reload with AutoModelForCausalLM.from_pretrained), solve_log.csv, provenance.json")
    return 0


# ------------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from reprise import pipeline
    from reprise.llm.data import TEST_SETS, make_tokens
    from reprise.llm.eval import perplexity
    from reprise.llm.models import load_local
    from reprise.metrics import ppl_metric

    pipeline.setup(threads=args.threads)
    model, tokenizer = load_local(args.model, dtype=args.dtype)
    if tokenizer is None:
        raise ReproError(f"{args.model} holds no tokenizer; save one beside the weights (tokenizer.save_pretrained)")
    metrics: dict[str, float] = {}
    for ts in args.testsets:
        if ts not in TEST_SETS:
            raise ReproError(f"unknown test set {ts!r}; known: {sorted(TEST_SETS)}")
        raw = _raw_corpus(args.cache, TEST_SETS[ts]["dataset"], args.datasets)
        windows, _ = make_tokens({"test_set": ts, "seqlen": args.seqlen, "max_windows": args.max_windows},
                                 tokenizer, raw)
        metrics[ppl_metric(ts, args.seqlen)] = perplexity(model, windows, args.seqlen, device=args.device)["ppl"]
    if args.tasks:
        from reprise.llm.eval.zeroshot import evaluate_zeroshot

        res = evaluate_zeroshot(model, tokenizer, args.tasks, task_dirs=args.task_dir or (), batch_size=args.batch_size,
                                limit=args.limit, device=args.device if args.device != "auto" else "cpu")
        metrics.update(res["metrics"])
    print(json.dumps(metrics, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- plan
def plan_jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job a scale's papers need, with its expected minutes and checkpoint bytes, from the same
    formulas the rules' resource requests use (reprise.resources). A run two papers share appears
    once per paper (``paper``) and carries its ``job`` key so a total can count it once."""
    from reprise.llm.models import load_model_registry
    from reprise.metrics import eval_stem
    from reprise.papers import DENSE, load_manifest
    from reprise.papers.experiment_study import experiment_jobs
    from reprise.papers.plan import method_config, run_metrics
    from reprise.resources import (ZEROSHOT_TOKENS, Shape, compress_expected_min, eval_expected_min, eval_tokens,
                                   wants_gpu)

    models = load_model_registry(cfg["registries"]["models"])
    cal, ev = cfg["calibration"], cfg["eval"]
    gpu, threads = wants_gpu(cfg), int(cfg.get("threads", 1))
    tokens = eval_tokens(ev)
    jobs = []
    for paper in cfg["papers"]:
        manifest = load_manifest(Path(cfg["registries"]["manifests"]) / f"{paper}.yaml")
        for run, metrics in sorted(run_metrics(manifest, cfg).items()):  # the jobs the DAG will hold
            model, method = run[0], run[1]
            shape = Shape.of(models[model])
            if method != DENSE:
                jobs.append({"paper": paper, "model": model, "kind": "compress", "job": (*run, "compress"),
                             "minutes": compress_expected_min(shape, cal["n"], cal["seqlen"], method, gpu, threads,
                                                              method_config(manifest, method, run[2])),
                             "checkpoint_bytes": shape.weight_bytes, "params": shape.params})
            for name in dict.fromkeys(eval_stem(m) for m in metrics):
                n_tokens = tokens if "_ppl@" in name else ZEROSHOT_TOKENS
                jobs.append({"paper": paper, "model": model, "kind": "eval", "job": (*run, name),
                             "minutes": eval_expected_min(shape, n_tokens, gpu, threads), "checkpoint_bytes": 0,
                             "params": shape.params})
        scale = cfg.get("scale", "smoke")
        for j in experiment_jobs(manifest, cfg):  # with their manifest's estimate (per job) and device
            spec = manifest.experiments[j.experiment]
            jobs.append({"paper": paper, "model": "-", "kind": "experiment", "job": (paper, j.stem),
                         "minutes": spec.runtime_at(scale), "checkpoint_bytes": 0, "params": 0,
                         "gpu": bool(gpu and spec.gpus_at(scale))})
    return jobs


def _summarise_jobs(jobs: list[dict[str, Any]], gpu: bool, keep: bool) -> dict[str, Any]:
    solves = [j for j in jobs if j["kind"] == "compress"]
    experiments = [j for j in jobs if j["kind"] == "experiment"]
    hours = round(sum(j["minutes"] for j in jobs if j["kind"] != "experiment" or j.get("gpu")) / 60, 1)
    # experiments run on the CPU unless their manifest asks for a GPU at this scale (`gpu`)
    cpu_only = round(sum(j["minutes"] for j in experiments if not j.get("gpu")) / 60, 1)
    # without keep_checkpoints a checkpoint lives only until its evaluations finish: one at a time
    stored = sum(j["checkpoint_bytes"] for j in solves) if keep else max((j["checkpoint_bytes"] for j in solves), default=0)
    return {"compress_jobs": len(solves), "eval_jobs": len(jobs) - len(solves) - len(experiments),
            "experiment_jobs": len(experiments),
            "gpu_hours_est": hours if gpu else 0.0, "cpu_hours_est": round((0.0 if gpu else hours) + cpu_only, 1),
            "storage_gb_est": round(stored / 1e9, 1)}


def _plan_inputs(cfg: dict[str, Any], jobs: list[dict[str, Any]] | None):
    from reprise.resources import wants_gpu

    return (plan_jobs(cfg) if jobs is None else jobs), wants_gpu(cfg), bool(cfg.get("keep_checkpoints"))


def plan_rows(cfg: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Jobs, expected GPU- or CPU-hours and checkpoint storage per paper and model (``jobs``:
    ``plan_jobs(cfg)`` when already computed)."""
    jobs, gpu, keep = _plan_inputs(cfg, jobs)
    rows = []
    for paper, model in dict.fromkeys((j["paper"], j["model"]) for j in jobs):
        mine = [j for j in jobs if (j["paper"], j["model"]) == (paper, model)]
        rows.append({"paper": paper, "model": model, "params": mine[0]["params"], **_summarise_jobs(mine, gpu, keep)})
    return rows


def plan_totals(cfg: dict[str, Any], jobs: list[dict[str, Any]] | None = None
                ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-paper subtotals, and the total over all papers with shared runs counted once."""
    jobs, gpu, keep = _plan_inputs(cfg, jobs)
    papers = {p: _summarise_jobs([j for j in jobs if j["paper"] == p], gpu, keep)
              for p in dict.fromkeys(j["paper"] for j in jobs)}
    unique = list({j["job"]: j for j in jobs}.values())
    return papers, _summarise_jobs(unique, gpu, keep)


def _cost_line(label: str, t: dict[str, Any]) -> str:
    return (f"{label}: {t['compress_jobs']} compress jobs, {t['eval_jobs']} eval jobs, {t['experiment_jobs']} experiment "
            f"jobs, ~{t['gpu_hours_est']} GPU-hours, "
            f"~{t['cpu_hours_est']} CPU-hours, ~{t['storage_gb_est']} GB of checkpoints")


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = _load_config(args.scale, args.config)
    jobs = plan_jobs(cfg)  # once: rows and totals are two views of the same jobs
    rows = plan_rows(cfg, jobs)
    head = ["paper", "model", "params", "compress_jobs", "eval_jobs", "experiment_jobs", "gpu_hours_est", "cpu_hours_est",
            "storage_gb_est"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(f"{r[h]:.3g}" if h == "params" else str(r[h]) for h in head) + " |")
    papers, total = plan_totals(cfg, jobs)
    print()
    for paper, sub in papers.items():
        print(_cost_line(f"paper {paper}", sub))
    print(_cost_line("total (runs shared by papers counted once)", total)
          + " (expected cost from reprise.resources; jobs request ~3x that time)")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from reprise.papers import load_manifest, targets

    cfg = _load_config(args.scale, args.config)
    for paper in cfg["papers"]:
        manifest = load_manifest(Path(cfg["registries"]["manifests"]) / f"{paper}.yaml")
        for t in targets(manifest):
            kind = "table" if t in manifest.tables else "figure"
            print(f"{paper}_{t}\t{kind}\tresults/papers/{paper}/{t}.{'md' if kind == 'table' else 'png'}")
        for sid, study in manifest.layer_studies.items():
            ext = "png" if study.is_figure else "md"
            print(f"{paper}_{sid}\tlayer study ({study.kind})\tresults/papers/{paper}/{sid}.{ext}")
        for sid in manifest.vision_studies:
            print(f"{paper}_{sid}\tvision study\tresults/papers/{paper}/{sid}.md")
        for eid, spec in manifest.experiments.items():
            print(f"{paper}_{eid}\texperiment ({spec.kind})\tresults/papers/{paper}/{eid}.{'png' if spec.is_figure else 'md'}")
        print(f"{paper} report\treport\tresults/papers/{paper}/report.md")
        print(f"{paper} cost\tcost\tresults/papers/{paper}/cost.csv")
    return 0


# -------------------------------------------------------------------------------------------- vision
def _csv_list(text: str, what: str, conv=str) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ReproError(f"--{what}: give a comma-separated list")
    try:
        return [conv(x) for x in items]
    except ValueError:
        raise ReproError(f"--{what} {text!r}: not a comma-separated list of numbers") from None


def cmd_vision(args: argparse.Namespace) -> int:
    from reprise.vision.study import LAYER_COLUMNS, format_table, run_channel_study, write_csv

    method_config = {}
    for item in args.set or ():
        method, dot, rest = item.partition(".")
        if not dot:
            raise ReproError(f"--set {item!r}: use method.key=value (e.g. osscar.local_search=true)")
        method_config.setdefault(method, {}).update(_parse_kv([rest]))
    layer_log: list = []
    rows = run_channel_study(args.model, _csv_list(args.methods, "methods"),
                             _csv_list(args.sparsities, "sparsities", float), seed=args.seed, calib_n=args.calib_n,
                             imagenet_dir=args.imagenet_dir, pretrained=not args.random_weights,
                             threads=args.threads, progress=not args.quiet, method_config=method_config,
                             eval_n=args.eval_n, input_size=args.input_size,
                             latency=True if args.latency else None, latency_batch=args.latency_batch,
                             layer_log=layer_log)
    write_csv(rows, args.out)
    print(format_table(rows))
    print(f"wrote {args.out}")
    if args.layer_log:
        write_csv(layer_log, args.layer_log, LAYER_COLUMNS)
        print(f"wrote {args.layer_log}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reprise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress one model with one method")
    c.add_argument("--model", required=True, help="registry key, model directory, .gguf file or hub id[@rev]")
    c.add_argument("--method", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--bits", type=int)
    c.add_argument("--group-size", type=int, dest="group_size")
    c.add_argument("--sparsity", type=float)
    c.add_argument("--nm", help='N:M pattern such as "2:4"')
    c.add_argument("--set", action="append", help="any other method option, key=value")
    c.add_argument("--calib-dataset", default="enwiki-gensim")
    c.add_argument("--calib-split", default="train")
    c.add_argument("--calib-protocol", default="contiguous")
    c.add_argument("--calib-n", type=int, default=16)
    c.add_argument("--seqlen", type=int, default=256)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--blocks", help="start:stop of blocks to compress")
    c.add_argument("--true-sequential", action="store_true")
    c.add_argument("--gram-dtype", default="float32")
    c.add_argument("--dtype", default="float32")
    c.add_argument("--device", default="auto")
    c.set_defaults(func=cmd_compress)

    e = sub.add_parser("evaluate", help="perplexity and zero-shot of a model directory")
    e.add_argument("--model", required=True)
    e.add_argument("--testsets", nargs="*", default=["enwiki-gensim"])
    e.add_argument("--seqlen", type=int, default=256)
    e.add_argument("--max-windows", type=int, default=8)
    e.add_argument("--tasks", nargs="*", default=[])
    e.add_argument("--task-dir", action="append")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--limit", type=int)
    e.add_argument("--dtype", default="float32")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    for name, func, help_ in (("plan", cmd_plan, "jobs, GPU-hours and storage of a scale before running it"),
                              ("targets", cmd_targets, "every named table/figure target")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--scale", default=None, choices=["smoke", "mini", "full"])
        s.add_argument("--config", default=DEFAULT_CONFIG)
        s.set_defaults(func=func)

    v = sub.add_parser("vision", help="OSSCAR one-shot channel pruning of a conv net (accuracy, FLOPs, latency)")
    v.add_argument("--model", required=True, help="digits-resnet, resnet50 or mobilenet_v2")
    v.add_argument("--methods", default="mp,mp-plus,osscar", help="comma-separated: mp, mp-plus, osscar, ziplm")
    v.add_argument("--sparsities", default="0.3,0.5,0.7", help="comma-separated fractions of channels removed")
    v.add_argument("--out", required=True, help="CSV of one row per method and sparsity, plus the dense row")
    v.add_argument("--layer-log", help="also write the per-layer solve rows to this CSV")
    v.add_argument("--imagenet-dir", help="ImageNet root with train/ and val/ class folders (vision.imagenet_dir)")
    v.add_argument("--random-weights", action="store_true",
                   help="ImageNet models with random weights: shape and speed checks only")
    v.add_argument("--calib-n", type=int, help="calibration images (default 256 digits, 128 ImageNet, 16 random)")
    v.add_argument("--eval-n", type=int, help="evaluate on a seeded subset of this many val images")
    v.add_argument("--input-size", type=int, default=224, help="ImageNet crop size")
    v.add_argument("--latency", action="store_true", help="also measure CPU latency (always on without top-1)")
    v.add_argument("--latency-batch", type=int, default=1)
    v.add_argument("--set", action="append", help="solver option, method.key=value (osscar.local_search=true)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=cmd_vision)

    for s in (c, e):
        s.add_argument("--models", default="config/models.yaml")
        s.add_argument("--datasets", default="config/datasets.yaml")
        s.add_argument("--cache", default=".", help="where models/ and data/ caches live")
        s.add_argument("--threads", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReproError as exc:
        print(f"reprise: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
