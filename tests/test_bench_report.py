"""Tests of reading a benchmark: statistics, speed-ups against the paper's, MACs, the schema.

Every number here is fabricated, so each expected value follows from arithmetic alone.
"""

from __future__ import annotations

import pytest
import torch

from waldorf.bench import PRESETS
from waldorf.bench_report import (
    PAPER_SPEEDUPS,
    chapter_settings,
    compare_macs,
    environment,
    format_table,
    load_recorded,
    pair_speedups,
    paper_ratio,
    paper_verdicts,
    speedup_table,
    summarise,
    validate_result,
)
from waldorf.models import WaldorfConfig, baseline_config, count_macs


def test_summarise_median_and_iqr_on_known_lists():
    assert summarise([5, 1, 4, 2, 3]) == {"median": 3.0, "iqr": 2.0, "n": 5}
    four = summarise([4.0, 1.0, 3.0, 2.0])  # quartiles 1.75 and 3.25 by linear interpolation
    assert four["median"] == pytest.approx(2.5) and four["iqr"] == pytest.approx(1.5)
    assert summarise([7.0]) == {"median": 7.0, "iqr": 0.0, "n": 1}
    outlier = summarise([10, 10, 10, 10, 1000])  # one slow run moves neither median nor IQR
    assert outlier["median"] == 10 and outlier["iqr"] == 0
    with pytest.raises(ValueError, match="at least one"):
        summarise([])


def fabricated_results(factors: dict[str, float] | None = None, seq_len: int = 384) -> list[dict]:
    """Median times ``10 ms * factor``: by default exactly the paper's ratios, WaLDORf at 10 ms."""
    factors = factors or {"waldorf": 1.0, **PAPER_SPEEDUPS, "teacher": 3.0}
    return [dict(model=m, seq_len=seq_len, batch_size=1, median_ms=10.0 * f, iqr_ms=0.1,
                 throughput_seq_per_s=100.0 / f, peak_mem_mb=None, n=5)
            for m, f in factors.items()]


def fabricated_doc(results: list[dict]) -> dict:
    env = dict(cpu="test CPU", cores=2, torch_threads=2, gpu=None, torch="2",
               transformers="5", git="abc1234", device="cpu")
    settings = dict(device="cpu", threads=2, seq_lens=[384], batch_sizes=[1], models=[],
                    warmup=1, min_repeats=3, max_repeats=9, cell_budget_s=1.0, seed=0,
                    weights="random-initialised")
    return dict(environment=env, settings=settings, results=results,
                speedups=speedup_table(results))


def test_speedup_table_reproduces_the_paper_ratios_from_fabricated_times():
    rows = {row["model"]: row for row in speedup_table(fabricated_results())}
    for model, ratio in PAPER_SPEEDUPS.items():
        assert rows[model]["waldorf_speedup"] == pytest.approx(ratio)
        assert rows[model]["paper_waldorf_speedup"] == ratio
    assert rows["waldorf"]["vs_bert_base"] == pytest.approx(9.13)
    assert rows["waldorf"]["vs_tinybert4"] == pytest.approx(1.24)
    assert rows["tinybert4"]["vs_bert_base"] == pytest.approx(9.13 / 1.24)
    assert rows["bert_large"]["vs_bert_base"] == pytest.approx(9.13 / 28.63)
    assert rows["teacher"]["waldorf_speedup"] == pytest.approx(3.0)
    assert rows["teacher"]["paper_waldorf_speedup"] is None  # the paper has no such model
    assert paper_ratio("tinybert4", "bert_base") == pytest.approx(9.13 / 1.24)
    assert paper_ratio("waldorf", "waldorf") == 1.0


def test_speedup_table_without_references_leaves_them_empty():
    rows = speedup_table([r for r in fabricated_results() if r["model"] in ("waldorf", "teacher")])
    assert {r["model"]: r["vs_bert_base"] for r in rows} == {"waldorf": None, "teacher": None}


def test_paper_verdicts_compare_each_ratio_at_the_papers_length_only():
    factors = {"waldorf": 1.0, "tinybert4": 1.5, "distilbert4": 3.1 * 0.95, "bert_base": 9.13 * 0.5,
               "teacher": 2.0}
    doc = fabricated_doc(fabricated_results(factors) + fabricated_results(factors, seq_len=128))
    verdicts = {row["model"]: row for row in paper_verdicts(doc)}
    assert set(verdicts) == {"tinybert4", "distilbert4", "bert_base"}  # measured and in the paper
    assert verdicts["tinybert4"]["verdict"] == "holds"
    assert verdicts["tinybert4"]["measured"] == pytest.approx(1.5)
    assert verdicts["distilbert4"]["verdict"] == "within 10%"
    assert verdicts["distilbert4"]["matches_paper"] and not verdicts["tinybert4"]["matches_paper"]
    assert verdicts["bert_base"]["verdict"] == "does not hold"
    assert verdicts["bert_base"]["measured_over_paper"] == pytest.approx(0.5)
    assert paper_verdicts(doc, batch_size=32) == []


def test_compare_macs_puts_arithmetic_next_to_measured_time():
    configs = {"waldorf": WaldorfConfig(), "tinybert4": baseline_config("tinybert4")}
    doc = fabricated_doc(fabricated_results({"waldorf": 1.0, "tinybert4": 1.24, "teacher": 2.0}))
    rows = {row["model"]: row for row in compare_macs(doc, configs)}
    assert set(rows) == {"waldorf", "tinybert4"}  # no config, no MACs
    waldorf_macs = count_macs(configs["waldorf"], 384)["total"]
    tiny_macs = count_macs(configs["tinybert4"], 384)["total"]
    assert rows["tinybert4"]["mac_speedup"] == pytest.approx(tiny_macs / waldorf_macs)
    assert rows["tinybert4"]["measured_speedup"] == pytest.approx(1.24)
    assert rows["waldorf"]["gmacs_per_s"] == pytest.approx(waldorf_macs / 1e9 / 0.010)
    assert rows["waldorf"]["gmacs"] == pytest.approx(waldorf_macs / 1e9)


def test_validate_result_rejects_wrong_types_and_empty_results():
    doc = fabricated_doc(fabricated_results())
    validate_result(doc)
    doc["environment"]["cores"] = True  # a bool is not a count
    with pytest.raises(ValueError, match=r"environment\.cores: expected int, got bool"):
        validate_result(doc)
    with pytest.raises(ValueError, match=r"speedups: expected a non-empty list"):
        validate_result({**fabricated_doc(fabricated_results()), "speedups": None})
    with pytest.raises(ValueError, match=r"settings: expected an object"):
        validate_result({**fabricated_doc(fabricated_results()), "settings": []})


def test_format_table_prints_measured_and_paper_ratios_side_by_side():
    table = format_table(fabricated_doc(fabricated_results()))
    line = next(row for row in table.splitlines() if row.startswith("bert_large"))
    assert "28.63" in line and line.count("28.63") == 2  # measured WaLDORf x, then the paper's
    assert "sequence length 384, batch size 1" in table


def test_environment_records_device_threads_and_load():
    env = environment(torch.device("cpu"), started=0.0, load_before=0.5)
    assert env["device"] == "cpu" and env["torch_threads"] == torch.get_num_threads()
    assert env["load_average_1min"][0] == 0.5 and len(env["load_average_1min"]) == 2


def test_recorded_gpu_benchmark_is_complete_and_says_where_it_ran():
    doc = load_recorded("bench-h200-full")
    env, settings = doc["environment"], doc["settings"]
    assert env["device"] == "cuda" and "H200" in env["gpu"]
    assert settings["preset"] == "full" and settings["dtype"] == "float32"
    cells = {(r["seq_len"], r["batch_size"], r["model"]) for r in doc["results"]}
    assert {(384, b, m) for b in (1, 32) for m in PAPER_SPEEDUPS} <= cells
    assert len(paper_verdicts(doc, 384, 32)) == len(PAPER_SPEEDUPS)


def test_load_recorded_names_the_known_documents_when_asked_for_another():
    with pytest.raises(FileNotFoundError, match="bench-h200-full"):
        load_recorded("bench-nowhere")


def test_pair_speedups_divide_median_times_per_batch_size_and_skip_missing_models():
    results = [dict(seq_len=384, batch_size=b, model=m, median_ms=ms * b)
               for b in (1, 32) for m, ms in (("bert_base", 9.0), ("tinybert4", 1.5))]
    results.append(dict(seq_len=128, batch_size=1, model="bert_large", median_ms=1.0))
    rows = pair_speedups(results, 384)
    assert rows == [{"faster model": "tinybert4", "than": "bert_base",
                     "paper": pytest.approx(9.13 / 1.24), "batch 1": 6.0, "batch 32": 6.0}]


def test_chapter_settings_take_the_full_preset_on_a_gpu_and_shrink_every_measurement_on_smoke():
    cpu, gpu = chapter_settings("cpu", "cpu"), chapter_settings("gpu", "cuda")
    smoke = chapter_settings("smoke", "cpu")
    assert cpu["preset"] == "paper" and cpu["seq_lens"] == PRESETS["paper"].seq_lens
    assert gpu["preset"] == "full" and gpu["seq_lens"] == PRESETS["full"].seq_lens
    assert smoke.keys() == cpu.keys() and smoke["preset"] == "smoke"
    assert smoke["baseline_overrides"]["hidden_size"] == 64 and not cpu["baseline_overrides"]
    assert max(smoke["seq_lens"]) < min(cpu["seq_lens"])
    assert smoke["timing"].max_repeats == 3 and smoke["dev_questions"] < cpu["dev_questions"]
    assert "compile" in cpu["deploy_paths"] and "compile" not in smoke["deploy_paths"]
