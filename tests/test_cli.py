"""The command line as a user meets it: fast help, one-line errors, exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import waldorf_cli

VALID_QA = {"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}


def squad(*qas: dict, context="Paris is a city.") -> dict:
    return {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": context, "qas": list(qas)}]}]}


def waldorf(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``waldorf ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "waldorf_cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def assert_user_error(done: subprocess.CompletedProcess, command: str, *needles: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"waldorf {command}: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_help_imports_no_heavy_library():
    code = ("import sys, waldorf_cli\n"
            "for argv in (['--help'], *([c, '--help'] for c in waldorf_cli.COMMANDS)):\n"
            "    try:\n        waldorf_cli.main(argv)\n    except SystemExit as e:\n"
            "        assert e.code == 0, argv\n"
            "heavy = sorted({'torch', 'transformers', 'datasets', 'waldorf'} & set(sys.modules))\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_option_has_help_text():
    parser = waldorf_cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in [("waldorf", parser), *subparsers.items()]:
        for action in sub._actions:
            if action.dest not in ("help", "command"):
                assert action.help, f"{name} {action.option_strings or action.dest}"


@pytest.mark.parametrize("name,content,needles", [
    ("missing.json", None, ["missing.json"]),
    ("notjson.json", "{not json", ["notjson.json"]),
    ("empty.json", "", ["empty.json"]),
    ("nodata.json", json.dumps({"version": "v2.0"}), ["nodata.json", "data"]),
    ("noid.json", json.dumps(squad({k: v for k, v in VALID_QA.items() if k != "id"})),
     ["noid.json", "'id'"]),
    ("ctx.json", json.dumps(squad(VALID_QA, context=42)), ["ctx.json", "context"]),
    ("dup.json", json.dumps(squad(VALID_QA, VALID_QA)), ["dup.json", "q1", "duplicate"]),
])
def test_malformed_data_files_are_one_line_errors(tmp_path, name, content, needles):
    data = tmp_path / name
    if content is not None:
        data.write_text(content)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"q1": "Paris"}))
    assert_user_error(waldorf("evaluate", str(data), str(preds)), "evaluate", *needles)


def test_a_predictions_list_is_a_one_line_error(tmp_path):
    data, preds = tmp_path / "dev.json", tmp_path / "preds.json"
    data.write_text(json.dumps(squad(VALID_QA)))
    preds.write_text(json.dumps(["Paris"]))
    assert_user_error(waldorf("evaluate", str(data), str(preds)), "evaluate", "preds.json")


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.json"
    done = waldorf("--debug", "evaluate", str(missing), str(missing))
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_a_missing_model_folder_is_named_not_sent_to_the_hub(tmp_path):
    missing = tmp_path / "no-such-model"
    done = waldorf("ask", str(missing), "-q", "Where?", "-c", "Paris.")
    assert_user_error(done, "ask", str(missing), "no such model folder")


def test_bad_argument_values_are_user_errors(tmp_path):
    assert_user_error(waldorf("bench", "--preset", "huge"), "bench", "huge")
    out = tmp_path / "out"
    assert_user_error(waldorf("book", "--profile", "huge", "--path-output", str(out)), "book",
                      "huge")
    assert_user_error(waldorf("book", "--profile", "smoke", "--record"), "book", "--record")
    assert not out.exists()


def test_internal_bugs_keep_their_traceback(monkeypatch, capsys):
    def broken(args):
        raise KeyError("a bug")

    import waldorf.artifacts

    monkeypatch.setattr(waldorf.artifacts, "run_artifacts", broken)
    with pytest.raises(KeyError):
        waldorf_cli.main(["artifacts"])
