"""The training loop: it learns, it resumes exactly (also after a real interruption or a damaged
checkpoint), and it follows its schedule."""

from __future__ import annotations

import logging
from dataclasses import replace

import datasets
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from waldorf import checkpoint, precision
from waldorf.train import (
    EpochSampler,
    EvenBatches,
    History,
    TrainArgs,
    resolve_mixed_precision,
    train,
    trim_padding,
)

SEQ = 16


def windows(n: int = 8) -> list[dict]:
    """Hand-made QA windows: random tokens, one gold span each."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (n, SEQ), generator=generator)
    return [dict(input_ids=ids[i], attention_mask=torch.ones(SEQ, dtype=torch.long),
                 start_positions=torch.tensor(1 + i), end_positions=torch.tensor(3 + i))
            for i in range(n)]


def tiny_bert(dropout: float = 0.1) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    return BertForQuestionAnswering(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=SEQ,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))


def exact_match(model, data: list[dict]) -> float:
    batch = {k: torch.stack([d[k] for d in data]) for k in ("input_ids", "attention_mask")}
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    starts = torch.stack([d["start_positions"] for d in data])
    ends = torch.stack([d["end_positions"] for d in data])
    hit = (out.start_logits.argmax(-1) == starts) & (out.end_logits.argmax(-1) == ends)
    return hit.float().mean().item()


def test_overfits_a_handful_of_windows(tmp_path):
    data, model = windows(), tiny_bert(dropout=0.0)
    em_before = exact_match(model, data)
    args = TrainArgs(epochs=12, learning_rate=3e-3, batch_size=2, warmup_ratio=0.05,
                     log_every=1, checkpoint_every=0)
    calls = []
    history = train(model, data, args, tmp_path, progress=False,
                    evaluate=lambda m: calls.append(1) or {"em": exact_match(m, data)})
    losses = [row["loss"] for row in history.rows]
    assert len(losses) == history.step == 48  # 4 steps per epoch
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert history.evals[-1]["em"] > em_before and history.evals[-1]["em"] >= 0.75
    assert len(calls) == len(history.evals) == 12 and history.finished
    assert (tmp_path / "model" / "config.json").exists()
    assert History.from_json((tmp_path / "history.json").read_text()) == history


def test_resume_after_interruption_is_exact(tmp_path):
    data = windows()
    args = TrainArgs(epochs=3, learning_rate=1e-3, batch_size=2, grad_accum_steps=2,
                     checkpoint_every=2, log_every=1)
    full = tiny_bert()
    reference = train(full, data, args, tmp_path / "full", progress=False)

    interrupted = train(tiny_bert(), data, replace(args, max_steps=3), tmp_path / "cut",
                        progress=False)
    assert interrupted.step == 3 and not interrupted.finished
    assert not (tmp_path / "cut" / "model").exists()
    assert not (tmp_path / "cut" / "checkpoint.tmp").exists()
    resumed_model = tiny_bert()
    resumed = train(resumed_model, data, args, tmp_path / "cut", progress=False)

    assert resumed.step == reference.step == 6  # 4 batches per epoch, 2 per step
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in reference.rows]
    for (name, a), b in zip(full.state_dict().items(), resumed_model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_fractional_epochs_and_schedule(tmp_path):
    args = TrainArgs(epochs=1.5, learning_rate=1e-3, batch_size=2, warmup_ratio=0.5,
                     log_every=1, checkpoint_every=0)
    history = train(tiny_bert(), windows(), args, tmp_path, progress=False,
                    evaluate=lambda m: {"ok": 1.0})
    assert history.step == 6 and len(history.evals) == 2  # 4 steps per epoch
    lrs = [row["lr"] for row in history.rows]
    assert lrs.index(max(lrs)) == 2 and lrs[-1] == 0.0  # warm-up then linear decay to 0


MACHINES = {  # (CUDA, bf16 native on the GPU, AVX512-BF16 or AMX on the CPU)
    "H200": (True, True, True), "T4": (True, False, True), "CPU with AMX": (False, False, True),
    "older CPU": (False, False, False),
}


@pytest.mark.parametrize(("machine", "bf16", "fp16"), [
    ("H200", "bf16", "fp16"), ("T4", "fp16", "fp16"), ("CPU with AMX", "bf16", "bf16"),
    ("older CPU", "no", "no")])
def test_mixed_precision_follows_the_hardware(monkeypatch, machine, bf16, fp16):
    cuda, native, cpu = MACHINES[machine]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    # a T4 reports bf16 when emulation counts: only the native answer may decide
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or (cuda and including_emulation))
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: cpu)
    assert resolve_mixed_precision("bf16") == bf16  # what every profile asks for
    assert resolve_mixed_precision("fp16") == fp16
    assert resolve_mixed_precision("no") == "no"
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_mixed_precision("fp8")


def test_autocast_runs_in_the_resolved_precision(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    layer = torch.nn.Linear(4, 4)
    with precision.autocast("bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    with precision.autocast("bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32  # fp32 where bf16 is slow


def test_length_grouped_sampler_is_a_seeded_permutation_of_similar_lengths():
    lengths = torch.randint(10, 200, (1000,), generator=torch.Generator().manual_seed(0))
    sampler = EpochSampler(1000, seed=3, lengths=lengths, batch_size=10)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    assert order == list(EpochSampler(1000, seed=3, lengths=lengths, batch_size=10))
    sampler.set_epoch(1)
    assert list(sampler) != order
    spread = [int(lengths[order[i:i + 10]].max() - lengths[order[i:i + 10]].min())
              for i in range(0, 1000, 10)]
    assert max(spread) < 40  # sorted within blocks of 500: neighbours have similar lengths


def test_even_batches_split_equally_over_processes():
    sampler = EpochSampler(11, seed=0)
    order = list(sampler)
    plain = list(EvenBatches(sampler, 4))  # one process: what DataLoader(batch_size=4) makes
    assert plain == [order[:4], order[4:8], order[8:]] and len(EvenBatches(sampler, 4)) == 3
    two = list(EvenBatches(sampler, 4, processes=2))
    assert two[:2] == plain[:2] and two[2] == order[8:] + order[:1]  # completed from the first
    assert [len(b) for b in EvenBatches(sampler, 6, processes=3)] == [6, 6]


def test_trim_padding_cuts_every_sequence_tensor_after_the_longest_window():
    mask = torch.zeros(2, 32, dtype=torch.long)
    mask[0, :11], mask[1, :5] = 1, 1
    items = [dict(input_ids=torch.arange(32), attention_mask=mask[i],
                  teacher_start_logits=torch.randn(32), start_positions=torch.tensor(3))
             for i in range(2)]
    batch = trim_padding(items)
    assert batch["input_ids"].shape == (2, 16)  # 11 real tokens, rounded up to a multiple of 8
    assert batch["teacher_start_logits"].shape == (2, 16)
    assert batch["start_positions"].shape == (2,)
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor([11, 5]))


# ---- interruptions: a run stopped part-way, or with damaged checkpoints, ends where an
# uninterrupted one does, bit for bit (fp32, dropout on, length-grouped batches) ----

RESUME_ARGS = TrainArgs(epochs=2, learning_rate=1e-3, batch_size=2, grad_accum_steps=2,
                        checkpoint_every=2, log_every=1, seed=3)


def grouped_windows(n: int = 12) -> datasets.Dataset:
    """Windows of different real lengths, as the book's runs feed them (grouped by length)."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(6, SEQ + 1, (n,), generator=generator)
    return datasets.Dataset.from_dict(dict(
        input_ids=torch.randint(5, 100, (n, SEQ), generator=generator).tolist(),
        attention_mask=(torch.arange(SEQ)[None] < lengths[:, None]).long().tolist(),
        start_positions=[1 + i % 4 for i in range(n)], end_positions=[2 + i % 4 for i in range(n)],
    )).with_format("torch")


class Interrupt:
    """A ``compute_loss`` that counts micro-batches and raises KeyboardInterrupt at one."""

    def __init__(self, at: int | None = None):
        self.at, self.calls = at, 0

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return model(**batch).loss, {}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(weights, history) of the run every interrupted one must reproduce: 12 windows in 6
    micro-batches, 3 optimizer steps per epoch, 6 in all, checkpoints at steps 2, 3 and 4."""
    model = tiny_bert()
    history = train(model, grouped_windows(), RESUME_ARGS, tmp_path_factory.mktemp("full"),
                    progress=False)
    return model.state_dict(), history


def assert_same_weights(model, weights) -> None:
    for (name, a), b in zip(weights.items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("stop_at", "saved_step"), [(7, 3), (11, 4)])
def test_a_run_interrupted_part_way_resumes_to_the_same_weights(tmp_path, uninterrupted,
                                                                stop_at, saved_step):
    # stop_at 7: first micro-batch of epoch 1, after the end-of-epoch checkpoint (step 3);
    # stop_at 11: step 6's first half, after the mid-epoch checkpoint of step 4 (2 batches in)
    weights, reference = uninterrupted
    with pytest.raises(KeyboardInterrupt):
        train(tiny_bert(), grouped_windows(), RESUME_ARGS, tmp_path,
              compute_loss=Interrupt(at=stop_at), progress=False)
    saved = History.from_json((tmp_path / "checkpoint" / "history.json").read_text())
    assert saved.step == saved_step and not (tmp_path / "model").exists()
    model, rest = tiny_bert(), Interrupt()
    resumed = train(model, grouped_windows(), RESUME_ARGS, tmp_path, compute_loss=rest,
                    progress=False)
    assert rest.calls == 12 - 2 * saved_step  # resumed from the checkpoint, not from scratch
    assert resumed.step == reference.step == 6
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in reference.rows]
    assert_same_weights(model, weights)


@pytest.mark.parametrize(("damaged", "resumed_step"), [(["checkpoint"], 4),
                                                        (["checkpoint", "checkpoint.prev"], 0)])
def test_a_damaged_checkpoint_is_reported_and_the_one_before_used(tmp_path, uninterrupted,
                                                                  caplog, damaged, resumed_step):
    weights, _ = uninterrupted
    stopped = train(tiny_bert(), grouped_windows(), replace(RESUME_ARGS, max_steps=5), tmp_path,
                    progress=False)
    assert stopped.step == 5  # saved at 5 (the stop), the one before at 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.prev"]
    for name in damaged:
        weights_file = tmp_path / name / "model.safetensors"
        weights_file.write_bytes(weights_file.read_bytes()[:-100])  # truncated
    model, rest = tiny_bert(), Interrupt()
    with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
        train(model, grouped_windows(), RESUME_ARGS, tmp_path, compute_loss=rest,
              progress=False)
    for name in damaged:
        assert f"{tmp_path / name}: model.safetensors" in caplog.text
    assert rest.calls == 12 - 2 * resumed_step  # from the checkpoint before, or from the start
    assert_same_weights(model, weights)
