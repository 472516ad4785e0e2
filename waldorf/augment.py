"""The transfer set: SQuAD questions plus task-specific variants for the teacher to label.

A student learns from the teacher wherever the teacher can speak, not only where gold labels
exist, so more (realistic) inputs buy accuracy for free. Three augmentations, each switchable
and each deterministic for a seed (every choice is drawn from a generator seeded with the
seed, the augmentation's name and the question id, so switching one off leaves the others'
rows unchanged):

- ``qwr`` question-word replacement: content words of the question swapped for nearest
  neighbours in the teacher's input-embedding space (TinyBERT's recipe without its masked-LM
  head). The context is untouched, so offsets stay valid; the answer may not, hence no gold.
- ``pair`` re-pairing: the question with another paragraph of the same article. Same topic,
  same entities, usually no answer: realistic unanswerable (or accidentally answerable)
  examples that the teacher labels. No gold.
- ``crop`` span-preserving context cropping: leading and/or trailing sentences that hold no
  gold answer are cut. Chosen as the third augmentation because it is the only one that keeps
  gold labels (answer offsets are shifted, every span re-checked; cutting text cannot make an
  unanswerable question answerable), so the hard loss gains data too; and the answer moves to
  new token positions and windows, which teaches the student that position is not evidence.

Explained in book/04_distillation.ipynb.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import defaultdict
from pathlib import Path

import datasets
import torch
from accelerate import PartialState
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from waldorf import teacher as teachers
from waldorf.artifacts import artifact_dir, build_artifact
from waldorf.config import Profile, get_profile, resolve_checkpoint
from waldorf.data import load_squad, tokenize_squad
from waldorf.files import staged_folder

AUGMENTATIONS = ("qwr", "pair", "crop")
GOLD_ORIGINS = ("original", "crop")  # rows whose answers are real gold labels
WORD = re.compile(r"[^\W\d_]+")  # runs of letters: what a replacement may swap
SENTENCE_START = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# Function words carry the question's type and syntax ("who" vs "when"); swapping them would
# change what is asked rather than how, so only content words are replaced.
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom whose why will with would you your yours yourself yourselves many much one ones another
""".split())


def _is_word_token(token: str) -> bool:
    """A whole-word vocabulary entry a question word may be replaced with."""
    return token.isalpha() and len(token) > 1 and token.lower() not in STOP_WORDS


class WordNeighbours:
    """Nearest whole-word neighbours by cosine similarity in an input-embedding matrix.

    Candidates exclude sub-word pieces (``##..``), special tokens, ``[UNK]``, punctuation,
    numbers and stop words. Explained in book/04_distillation.ipynb.
    """

    def __init__(self, tokenizer, embeddings: torch.Tensor, top_k: int = 8):
        vocab = tokenizer.get_vocab()  # token -> id
        self.vocab = {t: i for t, i in vocab.items() if _is_word_token(t)}
        self.tokens = tokenizer.convert_ids_to_tokens(list(range(embeddings.shape[0])))
        self.unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)  # (V, d)
        self.allowed = torch.zeros(embeddings.shape[0], dtype=torch.bool)  # (V,)
        self.allowed[[i for i in self.vocab.values() if i < len(self.allowed)]] = True
        self.top_k = top_k
        self.cache: dict[str, list[str]] = {}

    def key(self, word: str) -> str | None:
        """The vocabulary entry of a question word (lower-cased for uncased vocabularies)."""
        for form in (word, word.lower()):
            if form in self.vocab:
                return form
        return None

    def prepare(self, words: set[str], chunk: int = 1024) -> None:
        """Compute neighbours of many words at once (one matrix product per chunk)."""
        todo = sorted({k for w in words if (k := self.key(w)) is not None} - self.cache.keys())
        for lo in range(0, len(todo), chunk):
            batch = todo[lo:lo + chunk]
            ids = torch.tensor([self.vocab[k] for k in batch])  # (chunk,)
            sims = self.unit[ids] @ self.unit.T  # (chunk, V)
            sims[:, ~self.allowed] = -2.0  # (chunk, V)
            sims[torch.arange(len(batch)), ids] = -2.0  # never the word itself
            top = sims.topk(self.top_k, dim=-1).indices  # (chunk, top_k)
            for k, row in zip(batch, top.tolist(), strict=True):
                self.cache[k] = [self.tokens[i] for i in row]

    def __call__(self, word: str) -> list[str]:
        """Neighbours of ``word`` (empty when it is not a replaceable whole word)."""
        key = self.key(word)
        if key is None or word.lower() in STOP_WORDS or len(word) < 2:
            return []
        if key not in self.cache:
            self.prepare({word})
        return self.cache[key]


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new.capitalize() if old[:1].isupper() else new


def _copies(rate: float, rng: random.Random) -> int:
    """floor(rate) copies, plus one more with probability frac(rate)."""
    whole = math.floor(rate)
    return whole + int(rng.random() < rate - whole)


def replace_question_words(question: str, neighbours: WordNeighbours, fraction: float,
                           rng: random.Random) -> str:
    """Swap ``ceil(fraction * n)`` of the n replaceable words for a random top-k neighbour.

    Explained in book/04_distillation.ipynb.
    """
    slots = [(m, options) for m in WORD.finditer(question) if (options := neighbours(m.group()))]
    if not slots:
        return question
    chosen = sorted(rng.sample(range(len(slots)), max(1, math.ceil(fraction * len(slots)))))
    out = question
    for i in reversed(chosen):  # right to left, so earlier offsets stay valid
        match, options = slots[i]
        new = _match_case(rng.choice(options), match.group())
        out = out[:match.start()] + new + out[match.end():]
    return out


def sentence_bounds(context: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the context's sentences, trailing spaces excluded.

    Explained in book/04_distillation.ipynb.
    """
    starts = [0] + [m.end() for m in SENTENCE_START.finditer(context)]
    ends = starts[1:] + [len(context)]
    return [(s, s + len(context[s:e].rstrip())) for s, e in zip(starts, ends, strict=True)
            if context[s:e].strip()]


def spans_valid(context: str, answers: dict) -> bool:
    """Does every gold answer text sit at its answer_start?

    Explained in book/04_distillation.ipynb.
    """
    return all(context[s:s + len(t)] == t
               for t, s in zip(answers["text"], answers["answer_start"], strict=True))


def crop_options(context: str, answers: dict, rng: random.Random) -> list[tuple[int, int]]:
    """Every (left, right) character cut that keeps all gold spans and drops >= 1 sentence.

    Unanswerable questions keep one randomly drawn sentence instead of the answer region.
    Explained in book/04_distillation.ipynb.
    """
    bounds = sentence_bounds(context)
    if len(bounds) < 2 or not spans_valid(context, answers):
        return []
    if answers["text"]:
        lo = min(answers["answer_start"])
        hi = max(s + len(t) for t, s in zip(answers["text"], answers["answer_start"], strict=True))
    else:
        lo, hi = bounds[rng.randrange(len(bounds))]
    lefts = [s for s, _ in bounds if s <= lo]
    rights = [e for _, e in bounds if e >= hi]
    full = (bounds[0][0], bounds[-1][1])
    return [(a, b) for a in lefts for b in rights if a < b and (a, b) != full]


def build_transfer_set(examples: datasets.Dataset, tokenizer, embeddings: torch.Tensor, *,
                       qwr_variants: float = 1, pair_rate: float = 0.25, crop_rate: float = 0.25,
                       replace_fraction: float = 0.3, top_k: int = 8, seed: int = 0,
                       ) -> tuple[datasets.Dataset, dict[str, int]]:
    """Originals plus their augmentations, and how many rows each augmentation added.

    ``qwr_variants``, ``pair_rate`` and ``crop_rate``: copies per question on average
    (0 switches an augmentation off; 0.25 augments a random quarter of the questions).
    Added columns: ``origin`` ("original", "qwr", "pair", "crop") and ``has_gold``.
    ``qwr``/``pair`` rows have empty answers, which here means "label unknown, ask the
    teacher", not "unanswerable": read ``has_gold``.
    Explained in book/04_distillation.ipynb.
    """
    rows = examples.to_list()
    if qwr_variants > 0:
        neighbours = WordNeighbours(tokenizer, embeddings, top_k)
        neighbours.prepare({w for r in rows for w in WORD.findall(r["question"])})
    contexts_by_title: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["context"] not in contexts_by_title[r["title"]]:
            contexts_by_title[r["title"]].append(r["context"])
    empty = {"text": [], "answer_start": []}
    out = {name: [] for name in ("original", *AUGMENTATIONS)}
    for r in tqdm(rows, desc="augmenting", mininterval=2.0):
        out["original"].append({**r, "origin": "original", "has_gold": True})
        if qwr_variants > 0:
            seen = {r["question"]}
            for k in range(_copies(qwr_variants, random.Random(f"{seed}:qwrn:{r['id']}"))):
                rng = random.Random(f"{seed}:qwr:{r['id']}:{k}")
                for _ in range(5):  # a few draws to find a question not produced yet
                    q = replace_question_words(r["question"], neighbours, replace_fraction, rng)
                    if q not in seen:
                        seen.add(q)
                        out["qwr"].append({**r, "id": f"{r['id']}-qwr{k}", "question": q,
                                           "answers": empty, "origin": "qwr", "has_gold": False})
                        break
        rng = random.Random(f"{seed}:pair:{r['id']}")
        others = [c for c in contexts_by_title[r["title"]] if c != r["context"]]
        picked = rng.sample(others, min(len(others), _copies(pair_rate, rng)))
        out["pair"] += [{**r, "id": f"{r['id']}-pair{k}", "context": c, "answers": empty,
                         "origin": "pair", "has_gold": False} for k, c in enumerate(picked)]
        rng = random.Random(f"{seed}:crop:{r['id']}")
        n_crops = _copies(crop_rate, rng)
        options = crop_options(r["context"], r["answers"], rng) if n_crops else []
        for k, (a, b) in enumerate(rng.sample(options, min(len(options), n_crops))):
            answers = {"text": r["answers"]["text"],
                       "answer_start": [s - a for s in r["answers"]["answer_start"]]}
            out["crop"].append({**r, "id": f"{r['id']}-crop{k}", "context": r["context"][a:b],
                                "answers": answers, "origin": "crop", "has_gold": True})
    features = examples.features.copy()
    features["origin"] = datasets.Value("string")
    features["has_gold"] = datasets.Value("bool")
    merged = [row for part in out.values() for row in part]
    dataset = datasets.Dataset.from_list(merged, features=features)
    counts = {name: len(part) for name, part in out.items()} | {"total": len(merged)}
    return dataset, counts


def transfer_set(profile: Profile | None = None, model_dir: str | None = None,
                 examples: datasets.Dataset | None = None, **options,
                 ) -> tuple[datasets.Dataset, dict[str, int]]:
    """The profile's transfer set, with the embeddings and tokenizer of ``model_dir``.

    ``model_dir`` defaults to the teacher's backbone (its input embeddings barely move in
    fine-tuning); ``options`` go to ``build_transfer_set``. Explained in book/04_distillation.ipynb.
    """
    profile = profile or get_profile()
    model_dir = model_dir or resolve_checkpoint(profile.teacher.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    embeddings = AutoModel.from_pretrained(model_dir).get_input_embeddings().weight.detach()
    examples = examples if examples is not None else load_squad("train", profile)
    options = profile.student.augment_options() | {"seed": profile.seed} | options
    return build_transfer_set(examples, tokenizer, embeddings, **options)


def transfer_key(profile: Profile, run: teachers.TeacherRun, options: dict) -> dict:
    """What the teacher-labelled augmented windows depend on (their artifact key).

    Explained in book/04_distillation.ipynb.
    """
    return dict(teacher_cache=teachers.cache_key(profile, run), augment=options, seed=profile.seed)


def transfer_windows(profile: Profile, run: teachers.TeacherRun,
                     cache: datasets.Dataset | None = None, options: dict | None = None,
                     progress: bool = True) -> datasets.Dataset:
    """The teacher-labelled windows of the transfer set, with a ``has_gold`` column.

    Originals come from ``run``'s teacher cache (``cache``: ``teachers.teacher_cache``, if
    already loaded); augmented questions (``build_transfer_set`` with ``options``; None =
    no augmentation) are labelled by the teacher once and stored as an artifact (labelled
    again if its files fail their checksums). Explained in book/04_distillation.ipynb.
    """
    if cache is None:
        cache = teachers.teacher_cache(profile, run=run, progress=progress)
    if "has_gold" not in cache.column_names:
        cache = cache.add_column("has_gold", [True] * len(cache))
    if options is None:
        return cache
    key = transfer_key(profile, run, options)
    path = artifact_dir("transfer-set", profile.name, key)

    def label(folder: Path) -> dict:
        if not PartialState().is_main_process:
            return {}  # build_artifact keeps the main process's result only
        started = time.time()
        model, tokenizer = run.load()
        embeddings = model.get_input_embeddings().weight.detach()
        examples = load_squad("train", profile)
        rows, counts = build_transfer_set(examples, tokenizer, embeddings,
                                          **{"seed": profile.seed, **options})
        rows = rows.filter(lambda origin: origin != "original", input_columns="origin")
        if len(rows) == 0:  # nothing to add: recorded, so the next call knows at once
            return dict(counts=counts, windows=0, duration_s=time.time() - started)
        gold = dict(zip(rows["id"], rows["has_gold"], strict=True))
        windows = tokenize_squad(rows, tokenizer, profile, train=True)
        start, end = teachers.teacher_logits(model, windows, profile, progress=progress)
        logits = teachers.logit_columns(start, end)
        labelled = datasets.concatenate_datasets([windows, logits], axis=1)
        labelled = labelled.add_column("has_gold", [gold[i] for i in labelled["example_id"]])
        with staged_folder(folder / "windows") as staged:
            labelled.save_to_disk(str(staged))
        return dict(counts=counts, windows=len(labelled), duration_s=time.time() - started)

    if build_artifact(path, "transfer-set", profile.name, key, label)["windows"] == 0:
        return cache
    extra = datasets.load_from_disk(str(path / "windows")).cast(cache.features)
    return datasets.concatenate_datasets([cache, extra])
