"""SQuAD 2.0 in, model windows out, answer texts back: the data side of the book.

Two steps, each a function: read the official nested JSON into the schema of the hub
dataset ``rajpurkar/squad_v2``; cut question + paragraph pairs into overlapping token windows
with start/end labels. The way back, from window logits to answers, is
:mod:`waldorf.postprocess`. Explained in book/01_data_and_metric.ipynb.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np

from waldorf.config import Profile, data_dir, get_profile
from waldorf.errors import UserError

logger = logging.getLogger(__name__)

SAMPLE_PATH = Path(__file__).parent / "sample" / "squad2_sample.json"
SAMPLE_DEV_ARTICLES = 1  # the sample's last article is its dev split, the others its train split
SPLITS = ("train", "dev", "test")
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32"))},
})


class SquadFormatError(UserError):
    """A SQuAD file that is not what the official format promises; the message names the place.

    Explained in book/01_data_and_metric.ipynb.
    """


class _Problem(Exception):
    """One problem of one article or question; read_squad_json collects them all."""


def _require(obj, key: str, kind: type, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise _Problem(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], kind) or isinstance(obj[key], bool) and kind is int:
        raise _Problem(f"{where}: {key!r} should be {kind.__name__}, got {type(obj[key]).__name__}")
    return obj[key]


def _question_rows(qa: dict, context: str, where: str) -> dict:
    """Validate one question and return its row (everything but the title)."""
    qid = _require(qa, "id", str, where)
    where = f"{where}, question {qid!r}"
    question = _require(qa, "question", str, where)
    answers = _require(qa, "answers", list, where)
    impossible = qa.get("is_impossible", False)  # v1.1 files have no is_impossible: all answerable
    if impossible and answers:
        raise _Problem(f"{where}: is_impossible is true but it has {len(answers)} answers")
    if not impossible and not answers:
        raise _Problem(f"{where}: answerable question (is_impossible false or absent) "
                         "without answers")
    texts, starts = [], []
    for answer in answers:
        text = _require(answer, "text", str, where)
        start = _require(answer, "answer_start", int, where)
        found = context[start:start + len(text)]
        if found != text:
            raise _Problem(f"{where}: answer {text!r} does not occur at answer_start {start} "
                             f"(the context has {found!r} there; first occurrence at "
                             f"{context.find(text)})")
        texts.append(text)
        starts.append(start)
    return {"id": qid, "context": context, "question": question,
            "answers": {"text": texts, "answer_start": starts}}


def read_json_object(path: str | Path, what: str,
                     error: type[UserError] = UserError) -> dict:
    """A JSON object from a user's file; every way it can fail raises ``error`` naming the file.

    Explained in book/01_data_and_metric.ipynb.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read the {what} ({err})") from err
    if not text.strip():
        raise error(f"{path}: the {what} is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: the {what} is not JSON ({err})") from err
    if not isinstance(value, dict):
        raise error(f"{path}: the {what} should be a JSON object, got a {type(value).__name__}")
    return value


def read_squad_json(path: str | Path) -> datasets.Dataset:
    """Read an official SQuAD 1.1/2.0 file into the hub schema, checking every question.

    Nothing is skipped: every problem is collected and raised together as a SquadFormatError
    naming the file, article, question id and what is wrong, so a broken file never trains a
    model quietly on fewer questions. ``plausible_answers`` of unanswerable questions are not
    part of the hub schema and are not kept. Explained in book/01_data_and_metric.ipynb.
    """
    path = Path(path)
    raw = read_json_object(path, "SQuAD file", SquadFormatError)
    if not isinstance(raw.get("data"), list):
        raise SquadFormatError(f"{path}: expected an object with a 'data' list of articles "
                               "(official SQuAD format)")
    rows, problems, seen = [], [], {}
    for a, article in enumerate(raw["data"]):
        where = f"article {a}"
        try:
            title = _require(article, "title", str, where)
            where = f"article {title!r}"
            for p, paragraph in enumerate(_require(article, "paragraphs", list, where)):
                context = _require(paragraph, "context", str, f"{where}, paragraph {p}")
                for qa in _require(paragraph, "qas", list, f"{where}, paragraph {p}"):
                    qid = qa.get("id") if isinstance(qa, dict) else None
                    if isinstance(qid, str) and qid in seen:
                        problems.append(f"{where}, question {qid!r}: duplicate id "
                                        f"(first seen in article {seen[qid]!r})")
                    elif isinstance(qid, str):
                        seen[qid] = title
                    try:
                        rows.append({"title": title, **_question_rows(qa, context, where)})
                    except _Problem as err:
                        problems.append(str(err))
        except _Problem as err:
            problems.append(str(err))
    if len(problems) == 1:
        raise SquadFormatError(f"{path}: {problems[0]}")
    if problems:  # the first line names the first problem: the command line prints only it
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise SquadFormatError(f"{path}: {problems[0]} ({len(problems)} problem(s) in all, "
                               f"listed below)\n  {shown}{more}")
    columns = {name: [row[name] for row in rows] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def _split_files(split: str, profile: Profile) -> list[str]:
    if split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "train":
        return list(profile.data.train_files)
    return [profile.data.dev_file if split == "dev" else profile.data.test_file]


def _read_files(paths: list[Path]) -> datasets.Dataset:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"SQuAD file(s) not found: {', '.join(missing)} (check "
                        "WALDORF_DATA_DIR or the path given)")
    return datasets.concatenate_datasets([read_squad_json(p) for p in paths])


def _sample_split(split: str) -> datasets.Dataset:
    """The packaged sample: its last SAMPLE_DEV_ARTICLES articles are dev (and stand in for
    test, which the sample does not have), the rest train."""
    ds = read_squad_json(SAMPLE_PATH)
    titles = list(dict.fromkeys(ds["title"]))  # article order of the file
    dev_titles = set(titles[-SAMPLE_DEV_ARTICLES:])
    return ds.select([i for i, title in enumerate(ds["title"])
                      if (title in dev_titles) == (split != "train")])


def load_hub_split(name: str, split: str) -> datasets.Dataset:
    """One split of SQuAD 2.0 in the hub's format, in the schema of ``read_squad_json``.

    ``name``: a hub name, a folder of parquet files named by split (the hub's layout) or one
    written by ``DatasetDict.save_to_disk``: an offline mirror, or a test, takes the same path.
    Explained in book/01_data_and_metric.ipynb.
    """
    local = Path(name).expanduser()
    ds = (datasets.load_from_disk(str(local))[split] if (local / "dataset_dict.json").exists()
          else datasets.load_dataset(name, split=split))
    return ds if ds.features == FEATURES else ds.cast(FEATURES)


def _cut(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """Keep ``limit`` questions drawn with a seeded shuffle, in file order.

    The first N questions would come from one or two articles only (and the answerable /
    unanswerable mix varies between articles); a seeded draw is representative and the same
    on every run. Keeping file order leaves questions of one paragraph next to each other.
    """
    if limit is None or limit >= len(ds):
        return ds
    keep = np.sort(np.random.default_rng(seed).permutation(len(ds))[:limit])
    return ds.select(keep)


def load_squad(split: str, profile: Profile | None = None,
               path: str | Path | None = None) -> datasets.Dataset:
    """Load the train, dev or test split from the first source that exists, cut to the
    profile's size (test like dev).

    Train on train, choose on dev, report on test. Sources in order: ``path`` (a SQuAD file,
    or a folder holding the profile's files); the hub, when the profile says ``source="hub"``
    (its file names are then split names); ``WALDORF_DATA_DIR``; the sample shipped in the
    package. Several train files are concatenated. Where there is no separate test split (the
    packaged sample, the hub) test is the dev split, with a warning: its scores are then not
    held out from the choices made on dev. Explained in book/01_data_and_metric.ipynb.
    """
    profile = profile or get_profile()
    names = _split_files(split, profile)
    folder = data_dir()
    sample = f"packaged sample {SAMPLE_PATH.name}"
    single_file = path is not None and Path(path).is_file()
    if single_file:
        ds, source = read_squad_json(path), str(path)
    elif path is not None:
        ds, source = _read_files([Path(path) / n for n in names]), str(path)
    elif profile.data.source == "hub":
        hub = profile.data.hub_dataset
        ds = datasets.concatenate_datasets([load_hub_split(hub, n) for n in names])
        source = f"hub {hub} {names}"
    elif folder is not None:
        ds, source = _read_files([folder / n for n in names]), str(folder)
    else:
        ds, source = _sample_split(split), sample
        logger.warning("WALDORF_DATA_DIR is not set: using the tiny packaged sample (%d questions)",
                       len(ds))
    same_as_dev = not single_file and profile.data.test_file == profile.data.dev_file
    if split == "test" and (source == sample or same_as_dev):
        logger.warning("%s has no separate test split: test is the dev split, so its scores are "
                       "not held out from choices made on dev", source)
    limit = profile.data.max_train_examples if split == "train" else profile.data.max_dev_examples
    cut = _cut(ds, limit, profile.seed)
    logger.info("%s split: %d of %d questions from %s", split, len(cut), len(ds), source)
    return cut


def _tokenize_windows(examples: dict, tokenizer, max_length: int, stride: int):
    """Question first, context truncated into windows that overlap by ``stride`` tokens."""
    questions = [q.lstrip() for q in examples["question"]]  # leading spaces waste tokens
    enc = tokenizer(questions, examples["context"], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="max_length")
    owners = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = [examples["id"][i] for i in owners]
    seen = defaultdict(int)
    enc["window"] = []
    for owner in owners:  # a batch never splits an example, so counting within it suffices
        enc["window"].append(seen[owner])
        seen[owner] += 1
    return enc, owners


def prepare_train_features(examples: dict, tokenizer, max_length: int, stride: int) -> dict:
    """Batched map function: windows labelled with the first gold answer's token span.

    Windows of unanswerable questions and windows that do not contain the whole answer
    point both labels at CLS (position 0), the convention of BERT on SQuAD 2.0.
    Explained in book/01_data_and_metric.ipynb.
    """
    enc, owners = _tokenize_windows(examples, tokenizer, max_length, stride)
    starts, ends = [], []
    for k, owner in enumerate(owners):
        answers = examples["answers"][owner]
        start, end = 0, 0
        if answers["answer_start"]:
            first_char = answers["answer_start"][0]
            last_char = first_char + len(answers["text"][0])
            seq_ids = enc.sequence_ids(k)
            ctx = [i for i, s in enumerate(seq_ids) if s == 1]
            offsets = enc["offset_mapping"][k]
            if offsets[ctx[0]][0] <= first_char and offsets[ctx[-1]][1] >= last_char:
                start = next(i for i in ctx if offsets[i][1] > first_char)
                end = next(i for i in reversed(ctx) if offsets[i][0] < last_char)
        starts.append(start)
        ends.append(end)
    enc.pop("offset_mapping")
    return {**enc, "start_positions": starts, "end_positions": ends}


def prepare_eval_features(examples: dict, tokenizer, max_length: int, stride: int) -> dict:
    """Batched map function: windows plus character offsets (None outside the context).

    The offsets turn a predicted token span back into text of the original paragraph.
    Explained in book/01_data_and_metric.ipynb.
    """
    enc, _ = _tokenize_windows(examples, tokenizer, max_length, stride)
    enc["offset_mapping"] = [
        [list(o) if s == 1 else None for o, s in zip(offsets, enc.sequence_ids(k), strict=True)]
        for k, offsets in enumerate(enc["offset_mapping"])
    ]
    return dict(enc)


def tokenize_squad(ds: datasets.Dataset, tokenizer, profile: Profile | None = None,
                   train: bool = True) -> datasets.Dataset:
    """Turn questions into model windows with the profile's length and stride.

    Explained in book/01_data_and_metric.ipynb.
    """
    profile = profile or get_profile()
    fn = prepare_train_features if train else prepare_eval_features
    return ds.map(fn, batched=True, remove_columns=ds.column_names,
                  fn_kwargs=dict(tokenizer=tokenizer, max_length=profile.data.max_seq_length,
                                 stride=profile.data.doc_stride),
                  desc="train windows" if train else "eval windows")



def describe_windows(example: dict, tokenizer, max_length: int, stride: int) -> list[dict]:
    """One row per window of one question: which paragraph tokens and characters it covers,
    and its training labels.

    Token positions count from the paragraph's first token (the paragraph tokenized alone), so
    all windows of a question share one axis and their overlap can be read off. ``label_start``
    and ``label_end`` are the window positions of prepare_train_features (0 = CLS);
    ``answer_first``/``answer_last`` the same answer on the paragraph axis (None at CLS).
    Explained in book/01_data_and_metric.ipynb.
    """
    batch = {key: [value] for key, value in example.items()}
    labels = prepare_train_features(batch, tokenizer, max_length, stride)
    windows = prepare_eval_features(batch, tokenizer, max_length, stride)
    paragraph = tokenizer(example["context"], add_special_tokens=False,
                          return_offsets_mapping=True)["offset_mapping"]
    token_starts = np.array([start for start, _ in paragraph])
    rows = []
    for k, offsets in enumerate(windows["offset_mapping"]):
        inside = [i for i, o in enumerate(offsets) if o is not None]  # paragraph positions
        first = int(np.searchsorted(token_starts, offsets[inside[0]][0]))
        start, end = labels["start_positions"][k], labels["end_positions"][k]
        rows.append({"window": k, "first_token": first, "last_token": first + len(inside) - 1,
                     "char_start": offsets[inside[0]][0], "char_end": offsets[inside[-1]][1],
                     "label_start": start, "label_end": end,
                     "answer_first": first + start - inside[0] if start else None,
                     "answer_last": first + end - inside[0] if start else None})
    return rows

def subsample_negative_windows(features: datasets.Dataset, keep: float,
                               seed: int = 0) -> datasets.Dataset:
    """Keep every answer window and every window of unanswerable questions, but only a
    fraction ``keep`` of the answer-less windows of answerable questions.

    An example counts as answerable when one of its windows holds the answer (start > 0).
    Explained in book/02_teacher.ipynb.
    """
    if keep >= 1.0:
        return features
    ids = np.asarray(features["example_id"])
    has_span = np.asarray(features["start_positions"]) > 0
    answerable = np.isin(ids, ids[has_span])
    negative = answerable & ~has_span
    drop = negative & (np.random.default_rng(seed).random(len(ids)) >= keep)
    logger.info("kept %d of %d answer-less windows of answerable questions (keep=%.2f)",
                int(negative.sum() - drop.sum()), int(negative.sum()), keep)
    return features.select(np.flatnonzero(~drop))
