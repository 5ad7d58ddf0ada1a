"""Stage functions: one implementation behind both the ``reprise`` command and the workflow scripts.

Each stage reads declared inputs, writes its outputs atomically (a killed job leaves nothing that
looks finished) and records provenance. ``provenance.json`` is written last in a run directory,
so its presence means the run is complete.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping

from reprise.io import ReproError, atomic_path, read_json, write_json
from reprise.provenance import device_info, provenance, sha256_file

log = logging.getLogger("reprise")


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM (SLURM's time limit, scancel, a Snakemake kill).

    It is a ``SystemExit`` with the shell's code for SIGTERM (143), so every ``atomic_path`` and
    ``atomic_dir`` on the stack removes its temporary output on the way out, and the per-block
    resume state written so far stays for the retry.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _on_sigterm(signum: int, _frame: Any) -> None:
    # A second SIGTERM while the first is being handled must not interrupt the cleanup.
    signal.signal(signum, signal.SIG_IGN)
    log.error("received signal %d (time limit, scancel or kill): removing temporary outputs and exiting; "
              "finished blocks stay in the resume state", signum)
    raise Terminated(signum)


def install_sigterm_handler() -> None:
    """Turn SIGTERM into a clean ``Terminated`` exit (main thread only; a no-op elsewhere)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def setup(threads: int | None = None, log_file: str | os.PathLike | None = None) -> None:
    """Threads, deterministic CPU math, logging and SIGTERM handling for one job (torch only if this
    job has it loaded: the table/figure/report jobs run in an environment without it)."""
    import sys

    if "torch" in sys.modules or threads:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            if threads:
                torch.set_num_threads(int(threads))
            torch.backends.cuda.matmul.allow_tf32 = False  # spec §1.11: TF32 off, as the papers' code
            torch.backends.cudnn.allow_tf32 = False
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    install_sigterm_handler()


# ---------------------------------------------------------------------------------------------- data
def prepare_dataset(name: str, datasets_file: str, out_dir: str | os.PathLike) -> dict[str, Any]:
    from reprise.llm.data import fetch_raw, load_registry

    return fetch_raw(name, load_registry(datasets_file), out_dir)


def prepare_tokens(spec: Mapping[str, Any], tokenizer_dir: str | os.PathLike, raw_dir: str | os.PathLike,
                   out_path: str | os.PathLike) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from reprise.llm.data import make_tokens, save_tokens

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    windows, meta = make_tokens(spec, tokenizer, raw_dir)
    meta["tokenizer_dir"] = str(tokenizer_dir)
    save_tokens(out_path, windows, meta)
    return meta


def prepare_model(key: str, models_file: str, out_dir: str | os.PathLike, corpus_text: str | None = None) -> Path:
    """Materialise model ``key`` as a local safetensors directory, with a tokenizer report."""
    from reprise.llm.models import load_model_registry, materialize, tokenizer_report

    registry = load_model_registry(models_file)
    if key not in registry:
        raise ReproError(f"model {key!r} is not in {models_file}; known: {sorted(registry)}")
    out = materialize(registry[key], out_dir, registry)
    if corpus_text:
        source = read_json(Path(out) / "source.json")
        source["tokenizer"] = tokenizer_report(registry[key], registry, corpus_text)
        write_json(Path(out) / "source.json", source)
    return out


# ------------------------------------------------------------------------------------------ compress
def _csv_text(rows: list[dict[str, Any]], columns) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _load_for_compress(model_dir: str | os.PathLike, calib_path: str | os.PathLike, dtype: str):
    """Calibration tokens and their record, the model's source record, the model and tokenizer."""
    from reprise.llm.data import load_tokens
    from reprise.llm.models import load_local

    calib, calib_meta = load_tokens(calib_path)
    source_file = Path(model_dir) / "source.json"
    source = read_json(source_file) if source_file.is_file() else {}
    model, tokenizer = load_local(model_dir, dtype=dtype)
    return calib, calib_meta, source, model, tokenizer


def _solve_summary(method: str, config: Mapping[str, Any], driver_cfg: Any, rows: list[dict[str, Any]],
                   seconds: float) -> dict[str, Any]:
    """What every compress job reports: config, layer count, summed objective, mean rel_err, times."""
    return {
        "method": method, "config": dict(config), "driver": driver_cfg.to_dict(), "layers": len(rows),
        "objective_sum": sum(r["objective"] for r in rows),
        "mean_rel_err": sum(r["rel_err"] for r in rows) / max(len(rows), 1),
        "solve_seconds": sum(r["seconds"] for r in rows), "wall_seconds": seconds,
    }


def _write_run_records(out_dir: Path, rows: list[dict[str, Any]], columns, summary: Mapping[str, Any],
                       context: Mapping[str, Any] | None, source: Mapping[str, Any], calib_meta: Mapping[str, Any],
                       calib_path: str | os.PathLike, device: str, **extra: Any) -> None:
    """``solve_log.csv``, then ``provenance.json`` last (its presence marks the job finished)."""
    with atomic_path(out_dir / "solve_log.csv", ".csv") as tmp:
        tmp.write_text(_csv_text(rows, columns))
    write_json(out_dir / "provenance.json", provenance(
        stage="compress", **summary, context=dict(context or {}), model_source=source, calibration=calib_meta,
        calibration_sha256=sha256_file(calib_path), **extra, device=device_info(device)))


def compress(model_dir: str | os.PathLike, calib_path: str | os.PathLike, method: str, config: Mapping[str, Any],
             out_dir: str | os.PathLike, driver: Mapping[str, Any] | None = None, dtype: str = "float32",
             resume_dir: str | os.PathLike | None = None, save_model: bool = True,
             context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Compress the model in ``model_dir`` with ``method``; write ``out_dir/{model/, solve_log.csv, provenance.json}``."""
    from reprise.llm.driver import LOG_COLUMNS, DriverConfig, compress_model
    from reprise.llm.driver.structured import is_structured
    from reprise.llm.export import save_compressed
    from reprise.llm.methods import get_method

    out_dir = Path(out_dir)
    method_obj = get_method(method)
    if is_structured(method_obj):
        return compress_structured(model_dir, calib_path, method, config, out_dir, driver, dtype, save_model, context,
                                   resume_dir=resume_dir)
    cfg = method_obj.Config.from_dict(dict(config))  # validate before loading anything heavy
    driver_cfg = DriverConfig.from_dict(dict(driver or {}))
    calib, calib_meta, source, model, tokenizer = _load_for_compress(model_dir, calib_path, dtype)
    t0 = time.perf_counter()
    result = compress_model(model, calib, method, cfg.to_dict(), driver_cfg, resume_dir=resume_dir,
                            data_fingerprint=_data_fingerprint(source, calib_meta))
    summary = {**_solve_summary(method, cfg.to_dict(), driver_cfg, result.rows, time.perf_counter() - t0),
               "resumed_blocks": result.resumed_blocks}
    if save_model:
        save_compressed(model, tokenizer, out_dir / "model", {**summary, "base_model": str(model_dir)}, result.extras)
    _write_run_records(out_dir, result.rows, LOG_COLUMNS, summary, context, source, calib_meta, calib_path,
                       driver_cfg.device, fingerprint=result.fingerprint)
    _clear_resume(resume_dir)
    return summary


def _data_fingerprint(source: Mapping[str, Any], calib_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model-weights and calibration hashes from their records, for the resume fingerprint."""
    return {"weights": source.get("weights_sha256"), "calib": calib_meta.get("windows_sha256")}


def _clear_resume(resume_dir: str | os.PathLike | None) -> None:
    """Drop the per-block resume state once the run's records are written (it is no longer needed)."""
    if resume_dir:
        import shutil

        shutil.rmtree(resume_dir, ignore_errors=True)


STRUCTURED_LOG_COLUMNS = ("block", "layer", "kind", "method", "units", "kept", "objective", "ref_energy", "rel_err",
                          "seconds", "device")


def compress_structured(model_dir: str | os.PathLike, calib_path: str | os.PathLike, method: str,
                        config: Mapping[str, Any], out_dir: str | os.PathLike, driver: Mapping[str, Any] | None = None,
                        dtype: str = "float32", save_model: bool = True,
                        context: Mapping[str, Any] | None = None,
                        resume_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Structured pruning of attention units and FFN neurons (``reprise.llm.driver.structured``).

    ``resume_dir`` enables per-block resume as in the layer-wise path: the blocks restored from it
    are recorded as ``resumed_blocks`` and the state is cleared once the run is saved.

    When every block is pruned (equal unit counts), the model is shrunk physically and saved with
    ``save_shrunk``; with a block slice (smoke) the config cannot express per-block widths, so the
    pruned structure is masked (zeroed) in place and saved at full size, as ``compression.json`` says.
    """
    from reprise.llm.driver import DriverConfig
    from reprise.llm.driver.structured import KINDS, check_config, prune_structured
    from reprise.llm.export import mask_model, parameter_count, save_compressed, save_shrunk, shrink_model, unit_layout
    from reprise.llm.methods import get_method

    out_dir = Path(out_dir)
    check_config(get_method(method), config)  # before loading anything heavy
    driver_cfg = DriverConfig.from_dict(dict(driver or {}))
    calib, calib_meta, source, model, tokenizer = _load_for_compress(model_dir, calib_path, dtype)
    dense_params = parameter_count(model)
    t0 = time.perf_counter()
    result = prune_structured(model, calib, method, dict(config), unit_layout(model), driver_cfg,
                              resume_dir=resume_dir, data_fingerprint=_data_fingerprint(source, calib_meta),
                              progress=True)
    every_block = len(result.keep) == model.config.num_hidden_layers
    summary = {**_solve_summary(method, config, driver_cfg, result.rows, time.perf_counter() - t0),
               "kept": {k: sorted({r["kept"] for r in result.rows if r["kind"] == k}) for k in KINDS},
               "dense_parameters": dense_params, "shrunk": every_block, "resumed_blocks": result.resumed_blocks}
    if every_block:
        shrink_model(model, result.keep)
    else:
        mask_model(model, result.keep)
    summary["parameters"] = parameter_count(model)
    if save_model:
        info = {**summary, "base_model": str(model_dir)}
        if every_block:
            save_shrunk(model, tokenizer, out_dir / "model", info)
        else:
            save_compressed(model, tokenizer, out_dir / "model", {**info, "note": "block slice: pruned units are "
                            "zeroed, not removed (one FFN width and head count per config)"})
    _write_run_records(out_dir, result.rows, STRUCTURED_LOG_COLUMNS, summary, context, source, calib_meta, calib_path,
                       driver_cfg.device, fingerprint=result.fingerprint)
    _clear_resume(resume_dir)
    return summary


def extract_layer(model_dir: str | os.PathLike, calib_path: str | os.PathLike, block: int, layer: str,
                  out_path: str | os.PathLike, dtype: str = "float32", device: str = "auto") -> dict[str, Any]:
    """One linear's weight, input Gram and input mean in the dense model (for the layer studies)."""
    from reprise.llm.data import load_tokens
    from reprise.llm.driver import DriverConfig, collect_layer_grams
    from reprise.llm.models import load_local

    calib, calib_meta = load_tokens(calib_path)
    model, _ = load_local(model_dir, dtype=dtype)
    t0 = time.perf_counter()
    grams = collect_layer_grams(model, calib, [int(block)], DriverConfig(device=device))
    if (int(block), layer) not in grams:
        names = sorted(name for b, name in grams if b == int(block))
        raise ReproError(f"layer {layer!r} is not a linear of block {block}; the model's linears are {names}")
    rec = grams[(int(block), layer)]
    import torch

    record = {"W": rec["W"], "G": rec["G"].cpu(), "x_mean": rec.get("x_mean"), "n_tokens": int(rec["n_tokens"]),
              "block": int(block), "layer": layer, "role": rec.get("role")}
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".pt") as tmp:
        torch.save(record, tmp)
    info = {"block": int(block), "layer": layer, "shape": list(rec["W"].shape), "n_tokens": record["n_tokens"],
            "seconds": time.perf_counter() - t0}
    write_json(out_path.with_suffix(".json"), provenance(stage="layer_gram", **info, model_dir=str(model_dir),
                                                         calibration=calib_meta, device=device_info(device)))
    return info


# ------------------------------------------------------------------------------------------ evaluate
def evaluate_perplexity(model_dir: str | os.PathLike, tokens_path: str | os.PathLike, testset: str, seqlen: int,
                        out_json: str | os.PathLike, dtype: str = "float32", batch_size: int = 1,
                        device: str = "auto", calib_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Perplexity on one test set. With ``calib_path`` the calibration/test window overlap (the lab
    C4 protocol reuses calibration windows as test windows, spec §1.5) is measured and recorded."""
    from reprise.llm.data import load_tokens, overlap_report
    from reprise.llm.eval import perplexity
    from reprise.llm.models import load_local
    from reprise.metrics import ppl_metric

    windows, meta = load_tokens(tokens_path)
    model, _ = load_local(model_dir, dtype=dtype)
    t0 = time.perf_counter()
    res = perplexity(model, windows, seqlen, batch_size=batch_size, device=device)
    metrics = {ppl_metric(testset, seqlen): res["ppl"]}
    if calib_path is not None:
        calib, calib_meta = load_tokens(calib_path)
        res["calibration_overlap"] = overlap_report(calib, windows, f"calibration ({calib_meta.get('protocol')})", testset)
        if res["calibration_overlap"]["identical"]:
            log.warning("%s: %s", testset, res["calibration_overlap"]["finding"])
    write_json(out_json, {"metrics": metrics, "details": res, "provenance": provenance(
        stage="perplexity", model_dir=str(model_dir), testset=testset, tokens=meta,
        seconds=time.perf_counter() - t0, device=device_info(device))})
    return metrics


def evaluate_speed(model_dir: str | os.PathLike, dense_dir: str | os.PathLike, out_json: str | os.PathLike,
                   batch_size: int = 1, seqlen: int = 256, warmup: int = 2, repeats: int = 10,
                   dtype: str = "float32", device: str = "auto") -> dict[str, Any]:
    """Latency of a run's model against the dense model in the same process (speed-up, FLOP and
    parameter counts, at ``batch_size`` × ``seqlen`` tokens); metrics ``speed@b<B>x<L>/<field>``."""
    from reprise.llm.eval.speed import measure_speed
    from reprise.llm.models import load_local
    from reprise.llm.models.blockwise import pick_device
    from reprise.metrics import SPEED_FIELDS, speed_metric

    model, _ = load_local(model_dir, dtype=dtype)
    dense, _ = load_local(dense_dir, dtype=dtype)
    dev = pick_device(device)
    t0 = time.perf_counter()
    res = measure_speed(model, dense, batch_size, seqlen, warmup=warmup, repeats=repeats, device=dev)
    metrics = {speed_metric(f, batch_size, seqlen): float(res[f]) for f in SPEED_FIELDS}
    log.info("speed at %d x %d on %s (%d threads): %.1f ms vs dense %.1f ms, speed-up %.3f, FLOP ratio %.3f",
             batch_size, seqlen, dev, res["threads"], res["latency_ms"], res["dense_latency_ms"], res["speedup"],
             res["flop_ratio"])
    write_json(out_json, {"metrics": metrics, "details": res, "provenance": provenance(
        stage="speed", model_dir=str(model_dir), dense_dir=str(dense_dir), seconds=time.perf_counter() - t0,
        device=device_info(str(dev)))})
    return metrics


def evaluate_zeroshot(model_dir: str | os.PathLike, task: str, task_dir: str | os.PathLike | None,
                      out_json: str | os.PathLike, dtype: str = "float32", batch_size: int = 8,
                      limit: int | None = None, device: str = "cpu") -> dict[str, Any]:
    from reprise.llm.eval.zeroshot import evaluate_zeroshot as _zs
    from reprise.llm.models import load_local

    model, tokenizer = load_local(model_dir, dtype=dtype)
    t0 = time.perf_counter()
    res = _zs(model, tokenizer, [task], task_dirs=[task_dir] if task_dir else (), batch_size=batch_size,
              limit=limit, device=device)
    write_json(out_json, {"metrics": res["metrics"], "provenance": provenance(
        stage="zeroshot", model_dir=str(model_dir), task=task, versions=res.get("versions"),
        batch_size=batch_size, limit=limit, seconds=time.perf_counter() - t0, device=device_info(device))})
    return res["metrics"]
