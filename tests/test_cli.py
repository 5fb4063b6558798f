"""The command line: every user error is one line on stderr and exit status 2, and nothing is overwritten."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinyformers.apps.cli import main

TINY = [
    "d_model=16",
    "n_heads=2",
    "n_layers=1",
    "d_ff=32",
    "max_digits=4",
    "n_val=16",
    "n_test=16",
    "batch_size=8",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "train",
                "copy",
                "--out",
                str(out),
                "--max-steps",
                "6",
                "--no-progress",
                "--set",
                *TINY,
                "eval_every=3",
            ]
        )
        == 0
    )
    return out


def one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert match in err, err


def test_list_shows_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("copy", "reverse", "sort"):
        assert name in out
    assert "ready" in out


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["predict"], ["list"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out


def test_train_eval_predict(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert "test_exact_match" in metrics
    assert main(["predict", str(run_dir), "123", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["123", "4"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "nope", "--out", "{tmp}/x"], "unknown task 'nope'"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "colour=red"], "unknown setting"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "d_model=wide"], "expected an integer"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "lr"], "expected key=value"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "lr=-1"], "lr=-1.0 is out of range"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "arch=rnn"], "arch='rnn'"),
        (["train", "copy", "--out", "{tmp}/x", "--set", "d_model=30", "n_heads=4"], "divisible"),
        (["train", "copy", "--out", "{tmp}/x", "--resume"], "nothing to resume"),
        (["eval", "{tmp}/missing"], "no such run directory"),
        (["predict", "{tmp}/missing", "1"], "no such run directory"),
        (["train", "copy", "--out", "{tmp}/x", "--max-steps", "0"], "max_steps=0 is out of range"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, match, tmp_path, capsys):
    one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], match)


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "copy"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_existing_run_refused_and_kept(run_dir, capsys):
    before = (run_dir / "model.safetensors").read_bytes()
    one_line_error(capsys, ["train", "copy", "--out", str(run_dir), "--max-steps", "2"], "already there")
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_predict_bad_input(run_dir, capsys):
    one_line_error(capsys, ["predict", str(run_dir), "12a"], "give a sequence of digits")


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
            "not a valid safetensors",
        ),
        (
            lambda d: (d / "model.safetensors").write_bytes(b"\x80\x04K\x01."),
            "not a valid safetensors",
        ),  # a pickle
        (lambda d: (d / "model.safetensors").unlink(), "not found"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"a": 1}'), "not a tinyformers run"),
        (lambda d: _edit_config(d, lambda c: c["config"].update(bogus=1)), "unknown keys"),
        (lambda d: _edit_config(d, lambda c: c["config"].update(d_model=32)), "shape"),
        (lambda d: _edit_config(d, lambda c: c.update(task="zzz")), "unknown task"),
    ],
)
def test_corrupt_runs_are_refused(run_dir, tmp_path, damage, match, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    damage(broken)
    one_line_error(capsys, ["eval", str(broken)], match)


def _edit_config(d, change) -> None:
    c = json.loads((d / "config.json").read_text())
    change(c)
    (d / "config.json").write_text(json.dumps(c))


def test_console_entry_point_exit_code(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "tinyformers", "eval", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_options_a_task_does_not_take_are_one_line_errors(run_dir, capsys):
    """CLI options are passed to the task only when given; one the task has no use for is named, not a TypeError."""
    one_line_error(capsys, ["predict", str(run_dir), "123", "--num-beams", "3"], "does not take --num-beams")
    one_line_error(capsys, ["generate", str(run_dir), "--prompt", "1"], "does not generate")


def test_translate_is_predict(run_dir, capsys):
    assert main(["translate", str(run_dir), "123"]) == 0
    via_translate = capsys.readouterr().out
    assert main(["predict", str(run_dir), "123"]) == 0
    assert capsys.readouterr().out == via_translate


def test_tasks_are_discovered_from_their_modules():
    from tinyformers.tasks import TASKS

    for name, cls in TASKS.items():
        assert cls.name == name and cls.summary, name
    assert {"copy", "reverse", "sort", "shakespeare"} <= set(TASKS)


def test_generate_flags_come_from_generation_config():
    """Every GenerationConfig field with a Flag is a `generate` flag of its type, default and help; the
    existing flags keep their names, defaults and help lines."""
    from dataclasses import fields

    from tinyformers.apps.cli import build_parser
    from tinyformers.core.generation import GenerationConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    actions = {a.dest: a for a in sub.choices["generate"]._actions}
    declared = [f for f in fields(GenerationConfig) if f.metadata["flag"] is not None]
    assert {"max_new_tokens", "top_k", "top_p", "min_p", "typical_p", "num_beams"} <= {f.name for f in declared}
    for f in declared:
        action = actions[f.name]
        assert action.option_strings == ["--" + f.name.replace("_", "-")]
        assert action.help == f.metadata["flag"].help
    pinned = {  # dest: (default, type, help) as before the flags were derived
        "max_new_tokens": (200, int, None),
        "do_sample": (False, None, "sample instead of greedy / beam search"),
        "temperature": (1.0, float, None),
        "top_k": (None, int, "sample among the k most likely tokens"),
        "top_p": (None, float, "sample among the smallest set of tokens with probability >= p"),
        "repetition_penalty": (1.0, float, "> 1 discourages repeated tokens"),
        "no_repeat_ngram_size": (0, int, "never repeat an n-gram of this size"),
        "num_beams": (1, int, "beam search with this many beams"),
        "length_penalty": (1.0, float, "beam score = log p / length ** this"),
        "num_return_sequences": (1, int, None),
    }
    for dest, expected in pinned.items():
        assert (actions[dest].default, actions[dest].type, actions[dest].help) == expected, dest
    order = [a.dest for a in sub.choices["generate"]._actions if a.dest in pinned]
    assert order == list(pinned)
