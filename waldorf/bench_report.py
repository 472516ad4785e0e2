"""Reading a benchmark: speed-ups next to the paper's, arithmetic next to time, a checked schema.

A median time means little alone. This module turns the results of :mod:`waldorf.bench` into
what the paper claims (how many times faster WaLDORf is than each baseline), says whether each
claim holds on this machine, compares measured speed-ups with the ratio of multiply-accumulates
(what the speed-up *would* be if time followed arithmetic), and checks that a results document
has every field a reader of the JSON relies on.

Explained in book/07_speed.ipynb.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import torch
from transformers import PretrainedConfig

from waldorf.models import count_macs

# "WaLDORf is X times faster than ..." at sequence length 384 (the paper's headline).
PAPER_SPEEDUPS: dict[str, float] = {
    "tinybert4": 1.24, "distilbert4": 3.1, "bert_base": 9.13, "bert_large": 28.63,
}
PAPER_SEQ_LEN = 384
SUBJECT = "waldorf"
REFERENCES = ("bert_base", "tinybert4")  # the speed-up columns of the table


def summarise(times: Sequence[float]) -> dict:
    """Median, interquartile range and count: robust to the odd slow run, unlike mean and std.

    Quartiles interpolate linearly (numpy's default). Explained in book/07_speed.ipynb.
    """
    if len(times) == 0:
        raise ValueError("summarise needs at least one timing")
    q1, median, q3 = np.percentile(np.asarray(times, dtype=float), [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "n": len(times)}


def load_average() -> float | None:
    """The 1-minute load average (other jobs skew timings), or None where the OS has none.

    Explained in book/07_speed.ipynb.
    """
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def environment(device: torch.device, started: float, load_before: float | None = None) -> dict:
    """Machine, software, threads and load behind the numbers. Explained in book/07_speed.ipynb."""
    from waldorf.provenance import collect

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    cpuinfo = Path("/proc/cpuinfo")
    env = collect("bench", started)
    env.update(
        device=str(device), interop_threads=torch.get_num_interop_threads(),
        python=platform.python_version(), cuda=torch.version.cuda,
        onnxruntime=version("onnxruntime"), onnx=version("onnx"),
        cpu_bf16="avx512_bf16" in cpuinfo.read_text() if cpuinfo.exists() else None,
        load_average_1min=[load_before, load_average()],  # before and after the run
    )
    return env


def paper_ratio(model: str, reference: str) -> float | None:
    """How many times faster ``model`` is than ``reference`` by the paper's ratios, or None.

    Explained in book/07_speed.ipynb.
    """
    factors = {SUBJECT: 1.0, **PAPER_SPEEDUPS}  # each model's time in units of WaLDORf's
    if model not in factors or reference not in factors:
        return None
    return factors[reference] / factors[model]


def _medians(results: Sequence[dict]) -> dict[tuple[int, int], dict[str, float]]:
    """``{(seq_len, batch_size): {model: median_ms}}``."""
    groups: dict[tuple[int, int], dict[str, float]] = {}
    for row in results:
        groups.setdefault((row["seq_len"], row["batch_size"]), {})[row["model"]] = row["median_ms"]
    return groups


# Baselines against each other, without WaLDORf: (faster model, slower model).
BASELINE_PAIRS = (("tinybert4", "bert_base"), ("distilbert4", "bert_base"),
                  ("bert_base", "bert_large"), ("tinybert4", "bert_large"))


def pair_speedups(results: Sequence[dict], seq_len: int,
                  pairs: Sequence[tuple[str, str]] = BASELINE_PAIRS) -> list[dict]:
    """How many times faster the first model of each pair is than the second, per batch size.

    One row per pair measured at ``seq_len`` (``batch B`` columns from median times), with the
    paper's ratio for the same pair; pairs with a model not measured are left out.
    Explained in book/07_speed.ipynb.
    """
    groups = {b: medians for (s, b), medians in sorted(_medians(results).items()) if s == seq_len}
    rows = []
    for fast, slow in pairs:
        if all(fast in m and slow in m for m in groups.values()):
            rows.append({"faster model": fast, "than": slow, "paper": paper_ratio(fast, slow),
                         **{f"batch {b}": m[slow] / m[fast] for b, m in groups.items()}})
    return rows


def speedup_table(results: list[dict], subject: str = SUBJECT,
                  references: Sequence[str] = REFERENCES) -> list[dict]:
    """Speed-ups from median times, per sequence length and batch size, with the paper's ratios.

    ``vs_<ref>``: how many times faster the model is than ``ref``; ``waldorf_speedup``: how many
    times faster ``subject`` is than the model. Explained in book/07_speed.ipynb.
    """
    table = []
    for (seq_len, batch_size), medians in _medians(results).items():
        for model, median in medians.items():
            row = dict(seq_len=seq_len, batch_size=batch_size, model=model)
            for ref in references:
                row[f"vs_{ref}"] = medians[ref] / median if ref in medians else None
                row[f"paper_vs_{ref}"] = paper_ratio(model, ref)
            row["waldorf_speedup"] = median / medians[subject] if subject in medians else None
            row["paper_waldorf_speedup"] = paper_ratio(subject, model)
            table.append(row)
    return table


def paper_verdicts(doc: dict, seq_len: int = PAPER_SEQ_LEN, batch_size: int = 1,
                   tolerance: float = 0.1) -> list[dict]:
    """For each of the paper's ratios measured here: does "WaLDORf is X times faster" hold?

    ``verdict``: "holds" (measured >= paper), "within 10%" (short of it by less than
    ``tolerance``) or "does not hold"; ``matches_paper``: the measured ratio is the paper's
    number within ``tolerance``, in either direction. Explained in book/07_speed.ipynb.
    """
    rows = []
    for s in doc["speedups"]:
        paper, measured = PAPER_SPEEDUPS.get(s["model"]), s["waldorf_speedup"]
        if (s["seq_len"], s["batch_size"]) != (seq_len, batch_size) or None in (paper, measured):
            continue
        verdict = ("holds" if measured >= paper else
                   f"within {tolerance:.0%}" if measured >= paper * (1 - tolerance)
                   else "does not hold")
        rows.append(dict(model=s["model"], seq_len=seq_len, batch_size=batch_size, paper=paper,
                         measured=measured, measured_over_paper=measured / paper,
                         verdict=verdict, matches_paper=abs(measured / paper - 1) <= tolerance))
    return rows


def compare_macs(doc: dict, configs: Mapping[str, PretrainedConfig],
                 subject: str = SUBJECT) -> list[dict]:
    """Analytic multiply-accumulates next to measured time, per result row with a config.

    ``mac_speedup``: how many times faster ``subject`` would be if time followed MACs;
    ``measured_speedup``: how many times faster it is; ``gmacs_per_s``: the arithmetic rate the
    model reached (MACs from :func:`waldorf.models.count_macs`). Explained in book/07_speed.ipynb.
    """
    rows = []
    for (seq_len, batch_size), medians in _medians(doc["results"]).items():
        reference = medians.get(subject)
        subject_macs = count_macs(configs[subject], seq_len)["total"] if subject in configs else 0
        for model, median in medians.items():
            if model not in configs:
                continue
            macs = count_macs(configs[model], seq_len)["total"]  # one sequence
            rows.append(dict(
                model=model, seq_len=seq_len, batch_size=batch_size, gmacs=macs / 1e9,
                mac_speedup=macs / subject_macs if subject_macs else None,
                measured_speedup=median / reference if reference else None,
                gmacs_per_s=macs * batch_size / 1e9 / (median / 1e3)))
    return rows


NUMBER, OPTIONAL = (int, float), (int, float, type(None))
SCHEMA: dict[str, dict[str, tuple]] = {
    "environment": dict(cpu=(str,), cores=(int,), torch_threads=(int,), gpu=(str, type(None)),
                        torch=(str,), transformers=(str,), git=(str,), device=(str,)),
    "settings": dict(device=(str,), threads=(int,), seq_lens=(list,), batch_sizes=(list,),
                     models=(list,), warmup=(int,), min_repeats=(int,), max_repeats=(int,),
                     cell_budget_s=NUMBER, seed=(int,), weights=(str,)),
    "results": dict(model=(str,), seq_len=(int,), batch_size=(int,), median_ms=NUMBER,
                    iqr_ms=NUMBER, throughput_seq_per_s=NUMBER, peak_mem_mb=OPTIONAL, n=(int,)),
    "speedups": dict(seq_len=(int,), batch_size=(int,), model=(str,), vs_bert_base=OPTIONAL,
                     vs_tinybert4=OPTIONAL, waldorf_speedup=OPTIONAL,
                     paper_waldorf_speedup=OPTIONAL),
}


def validate_result(doc: dict) -> None:
    """Raise ValueError naming the first field that breaks SCHEMA; extra fields are allowed.

    Explained in book/07_speed.ipynb.
    """
    def check(record: object, fields: dict[str, tuple], where: str) -> None:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
        for key, types in fields.items():
            if key not in record:
                raise ValueError(f"{where}.{key}: missing")
            value = record[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"{where}.{key}: expected {'/'.join(t.__name__ for t in types)},"
                                 f" got {type(value).__name__} {value!r}")

    for section in ("environment", "settings"):
        check(doc.get(section), SCHEMA[section], section)
    for section in ("results", "speedups"):
        if not isinstance(doc.get(section), list) or (section == "results" and not doc[section]):
            raise ValueError(f"{section}: expected a non-empty list")
        for i, row in enumerate(doc[section]):
            check(row, SCHEMA[section], f"{section}[{i}]")


def load_recorded(name: str = "bench-h200-full") -> dict:
    """A results document recorded on hardware the book's own run lacks, checked by SCHEMA.

    ``waldorf/recorded/NAME.json`` holds the output of ``waldorf bench --json`` run elsewhere
    (``bench-h200-full``: ``--preset full --device cuda`` on a lent H200); its ``environment``
    says where, when and at which revision. Explained in book/07_speed.ipynb.
    """
    folder = resources.files("waldorf") / "recorded"
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                       if p.name.endswith(".json"))
        raise FileNotFoundError(f"no recorded benchmark {name!r} in {folder}; known: {known}")
    doc = json.loads(path.read_text())
    validate_result(doc)
    return doc


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(doc: dict) -> str:
    """The results as text: times, memory and speed-ups next to the paper's ratios.

    Explained in book/07_speed.ipynb.
    """
    env, settings = doc["environment"], doc["settings"]
    lines = [f"{env['device']} · {env['cpu']} · {settings['threads']} threads"
             f" · torch {env['torch']} · weights {settings['weights'].split(' ')[0]}"]
    rows = {(r["seq_len"], r["batch_size"], r["model"]): r for r in doc["results"]}
    w = max(len(r["model"]) for r in doc["results"]) + 2
    header = (f"{'model':<{w}}{'median ms':>11}{'IQR ms':>9}{'seq/s':>9}{'peak MiB':>10}{'n':>5}"
              f"{'x BERT-Base':>13}{'paper':>9}{'x TinyBERT-4':>14}{'paper':>9}"
              f"{'WaLDORf x':>11}{'paper':>9}")
    previous = None
    for s in doc["speedups"]:
        if (s["seq_len"], s["batch_size"]) != previous:
            previous = (s["seq_len"], s["batch_size"])
            lines += ["", f"sequence length {s['seq_len']}, batch size {s['batch_size']}"
                      f" (paper columns: the paper's ratios at length {PAPER_SEQ_LEN})", header]
        r = rows[(s["seq_len"], s["batch_size"], s["model"])]
        lines.append(
            f"{s['model']:<{w}}{_num(r['median_ms'], '.1f'):>11}{_num(r['iqr_ms'], '.1f'):>9}"
            f"{_num(r['throughput_seq_per_s'], '.1f'):>9}{_num(r['peak_mem_mb'], '.0f'):>10}"
            f"{r['n']:>5}{_num(s['vs_bert_base']):>13}{_num(s['paper_vs_bert_base']):>9}"
            f"{_num(s['vs_tinybert4']):>14}{_num(s['paper_vs_tinybert4']):>9}"
            f"{_num(s['waldorf_speedup']):>11}{_num(s['paper_waldorf_speedup']):>9}")
    return "\n".join(lines)


def chapter_settings(profile_name: str, device: str) -> dict:
    """What the speed chapter measures on a profile, so its numbers can be read next to it.

    On a CUDA ``device`` the ``full`` preset (lengths 128 to 512), else the ``paper`` preset
    (length 384), plus the sizes of the chapter's length sweep, block profile, deployment paths
    and dev-set agreement. ``smoke`` shrinks every baseline to a width of 64 and every
    measurement to a few runs, so that CI runs each of them in seconds; ``preset`` is the
    label the results document carries. Explained in book/07_speed.ipynb.
    """
    # imported here: waldorf.bench and waldorf.deploy import this module
    from waldorf.bench import PRESETS, Timing
    from waldorf.deploy import DEPLOY_PATHS

    preset = "full" if device == "cuda" else "paper"
    settings = dict(
        preset=preset, models=PRESETS[preset].models, seq_lens=PRESETS[preset].seq_lens,
        batch_sizes=PRESETS[preset].batch_sizes, timing=PRESETS[preset].timing,
        baseline_overrides={},  # the real shapes
        sweep_models=("waldorf", "tinybert4", "teacher", "bert_base"),
        sweep_lens=(128, 256, 384, 512),
        sweep_timing=Timing(warmup=1, min_repeats=5, max_repeats=40, cell_budget_s=3.0),
        profile_len=384, profile_repeats=20,
        deploy_models=("waldorf", "tinybert4"), deploy_paths=DEPLOY_PATHS, deploy_len=384,
        deploy_timing=Timing(warmup=2, min_repeats=5, max_repeats=60, cell_budget_s=5.0),
        compile_backend="inductor",
        dev_paths=("eager_fp32", "bf16_autocast", "int8_dynamic", "onnxruntime"),
        dev_questions=200,
    )
    if profile_name == "smoke":
        few = Timing(warmup=1, min_repeats=3, max_repeats=3, cell_budget_s=0.0)
        settings.update(
            preset="smoke", seq_lens=(32,), batch_sizes=(1, 4), timing=few,
            baseline_overrides=dict(hidden_size=64, num_attention_heads=2, intermediate_size=128),
            sweep_models=("waldorf", "tinybert4"), sweep_lens=(16, 32, 64), sweep_timing=few,
            profile_len=32, profile_repeats=5,
            deploy_paths=("eager_fp32", "bf16_autocast", "int8_dynamic"), deploy_len=32,
            deploy_timing=few, dev_questions=8,
        )
    return settings
