"""Tests of the benchmark harness: interleaving, repeat counts, memory, model specs, the CLI,
and a tiny end-to-end run checked against the JSON schema.

No test asserts a timing: only structure, counts and arithmetic.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

import waldorf_cli
from waldorf import bench
from waldorf.bench import Timing, build_model, interleaved_schedule, repeats_for, run_benchmark
from waldorf.bench_report import format_table, validate_result

TINY_TIMING = Timing(warmup=1, min_repeats=2, max_repeats=2, cell_budget_s=0.0)


def tiny_bert(vocab_size: int = 1200, positions: int = 64) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=positions)
    return BertForQuestionAnswering(config).eval()


def tiny_waldorf():
    from waldorf.models import WaldorfConfig, WaldorfForQuestionAnswering

    torch.manual_seed(0)
    config = WaldorfConfig(vocab_size=1200, hidden_size=32, embedding_size=16,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                           num_transformer_layers=1)
    return WaldorfForQuestionAnswering(config).eval()


def test_schedule_runs_every_model_once_per_round_in_changing_orders():
    models = ["a", "b", "c", "d"]
    schedule = interleaved_schedule(models, repeats=12, seed=3)
    assert len(schedule) == 12
    assert all(sorted(round_) == models for round_ in schedule)
    assert len({tuple(round_) for round_ in schedule}) > 1  # shuffled, not a fixed order
    assert interleaved_schedule(models, 12, seed=3) == schedule  # deterministic by seed
    assert interleaved_schedule(models, 12, seed=4) != schedule


def test_schedule_spreads_models_with_fewer_repeats_over_all_rounds():
    schedule = interleaved_schedule(["fast", "slow", "slowest"],
                                    {"fast": 8, "slow": 4, "slowest": 1}, seed=0)
    counts = Counter(name for round_ in schedule for name in round_)
    assert counts == {"fast": 8, "slow": 4, "slowest": 1}
    assert all("fast" in round_ for round_ in schedule)
    slow_rounds = [i for i, round_ in enumerate(schedule) if "slow" in round_]
    assert slow_rounds == [1, 3, 5, 7]  # every other round, not the first four
    assert interleaved_schedule(["a"], 0, seed=0) == []


def test_repeats_fill_the_cell_budget_within_bounds():
    timing = Timing(warmup=1, min_repeats=3, max_repeats=50, cell_budget_s=1.0)
    assert repeats_for(100.0, timing) == 10
    assert repeats_for(5000.0, timing) == 3  # slow cell: the minimum
    assert repeats_for(0.1, timing) == 50  # fast cell: the maximum


def test_measure_group_warms_up_each_then_times_them_interleaved():
    calls = []
    fns = {name: partial(calls.append, name) for name in "abc"}
    timing = Timing(warmup=2, min_repeats=4, max_repeats=4, cell_budget_s=0.0)
    out = bench.measure_group(fns, timing, torch.device("cpu"), seed=1)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, model by model
    rounds = [calls[6 + 3 * i:9 + 3 * i] for i in range(4)]
    assert rounds == interleaved_schedule(list("abc"), dict.fromkeys("abc", 4), seed=1)
    assert all(len(cell["times_ms"]) == 4 and cell["peak_mem_mb"] is None
               for cell in out.values())
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        bench.measure_group(fns, Timing(warmup=0), torch.device("cpu"))


@pytest.fixture(scope="module")
def tiny_doc() -> dict:
    models = {"bert_tiny": tiny_bert(), "waldorf": tiny_waldorf()}
    return run_benchmark(models, seq_lens=[16], batch_sizes=[1, 2], timing=TINY_TIMING,
                         threads=1, seed=0, preset="test")


def test_tiny_run_matches_the_schema_and_survives_json(tiny_doc):
    validate_result(tiny_doc)
    validate_result(json.loads(json.dumps(tiny_doc)))
    cells = {(r["model"], r["batch_size"]) for r in tiny_doc["results"]}
    assert cells == {(m, b) for m in ("bert_tiny", "waldorf") for b in (1, 2)}
    for row in tiny_doc["results"]:
        assert row["n"] == 2 and len(row["times_ms"]) == 2
        per_second = row["batch_size"] * 1e3 / row["median_ms"]
        assert row["throughput_seq_per_s"] == pytest.approx(per_second)
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] > 0
    assert tiny_doc["settings"]["threads"] == 1 == tiny_doc["environment"]["torch_threads"]
    assert tiny_doc["settings"]["weights"].startswith("random")
    assert len(tiny_doc["speedups"]) == 4
    table = format_table(tiny_doc)
    assert "bert_tiny" in table and "batch size 2" in table


def test_validate_result_names_the_broken_field(tiny_doc):
    broken = json.loads(json.dumps(tiny_doc))
    broken["results"][1]["median_ms"] = "fast"
    with pytest.raises(ValueError, match=r"results\[1\]\.median_ms"):
        validate_result(broken)
    del broken["environment"]["cpu"]
    with pytest.raises(ValueError, match=r"environment\.cpu: missing"):
        validate_result(broken)
    with pytest.raises(ValueError, match="results: expected a non-empty list"):
        validate_result({**tiny_doc, "results": []})


def test_too_long_sequences_are_refused_by_name():
    with pytest.raises(ValueError, match="'bert_tiny' takes at most 64"):
        run_benchmark({"bert_tiny": tiny_bert()}, [128], [1], TINY_TIMING)


def test_cpu_peak_memory_sees_a_large_temporary():
    if not bench.Path("/proc/self/clear_refs").exists():
        pytest.skip("peak resident memory needs Linux /proc/self/clear_refs")
    peak = bench.peak_memory_mb(lambda: torch.ones(32 * 2**20 // 4).sum(), torch.device("cpu"),
                                weight_bytes=2**20)
    assert peak is not None and peak >= 1 + 32 * 0.9  # 1 MiB "weights" + a 32 MiB tensor


def test_model_specs_build_named_shapes_and_variants():
    teacher = build_model("teacher")
    assert (teacher.config.num_hidden_layers, teacher.config.hidden_size) == (6, 384)
    variant = build_model("waldorf:downsample=1,downsample_mode=pool,hidden_size=64,"
                          "num_attention_heads=2,intermediate_size=128")
    assert (variant.config.downsample, variant.config.downsample_mode) == (1, "pool")
    narrow = build_model("tinybert4:hidden_size=64", num_attention_heads=2, hidden_size=32)
    assert (narrow.config.hidden_size, narrow.config.num_attention_heads) == (32, 2)
    with pytest.raises(ValueError, match="expected key=value"):
        build_model("waldorf:downsample")


def test_cli_writes_a_valid_document(tmp_path, capsys):
    out = tmp_path / "bench.json"
    tiny = "hidden_size=32,num_attention_heads=2,intermediate_size=64"
    args = waldorf_cli.build_parser().parse_args([
        "bench", "--models", f"waldorf:{tiny},embedding_size=16,num_transformer_layers=1",
        f"tinybert4:{tiny},num_hidden_layers=1",
        "--seq-lens", "16", "--batch-sizes", "1", "--threads", "1", "--min-repeats", "2",
        "--max-repeats", "2", "--json", str(out)])
    assert bench.run_bench(args) == 0
    doc = json.loads(out.read_text())
    validate_result(doc)
    assert doc["settings"]["preset"] == "quick" and len(doc["results"]) == 2
    assert "median ms" in capsys.readouterr().out
