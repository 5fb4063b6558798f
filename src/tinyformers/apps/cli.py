"""The ``tinyformers`` command: list, train, eval, predict (alias translate), generate, attention, export.

Every user error (unknown task, bad ``--set``, missing or corrupt run) prints one line to stderr and
exits with status 2; nothing the user had is overwritten.

Each command imports the library when it runs, not this module: the task registry takes seconds to import,
and ``tinyformers --help`` or a mistyped flag should answer at once (``core.generation`` is imported here: the
``generate`` flags are made from :class:`GenerationConfig`'s fields). Optional capabilities (predict,
generate, attention) are the protocols of :mod:`tinyformers.engine.task`, checked with ``isinstance``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, NoReturn

from tinyformers.core.generation import GenerationConfig
from tinyformers.engine.loggers import LOGGERS
from tinyformers.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line instead of argparse's usage dump."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tinyformers", description="Transformers from scratch, trained on a laptop CPU.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the tasks, and whether their data is available here")

    t = sub.add_parser("train", help="train a task into a run directory")
    t.add_argument("task", help="task name (see `tinyformers list`)")
    t.add_argument("--out", required=True, type=Path, help="run directory to create (or resume)")
    t.add_argument("--max-steps", type=int, help="optimizer steps")
    t.add_argument("--max-time", type=float, help="training budget in seconds")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="where to train (default: auto)")
    t.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override any task setting"
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument(
        "--logger",
        choices=LOGGERS,
        default="none",
        help="also send hyperparameters, metrics and plots to TensorBoard or W&B (offline unless WANDB_MODE is set)",
    )

    e = sub.add_parser("eval", help="re-evaluate a saved run on its held-out split")
    e.add_argument("run", type=Path)
    e.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="e.g. evaluate on other data")

    pr = sub.add_parser("predict", aliases=["translate"], help="run a trained model on your inputs")
    pr.add_argument("run", type=Path)
    pr.add_argument("inputs", nargs="+", help="inputs (text, or file paths for image/audio tasks)")
    pr.add_argument("--num-beams", type=int, help="beam search with this many beams (tasks that write text)")
    pr.add_argument("--length-penalty", type=float, help="beam score = log p / length ** this")
    pr.add_argument("--show-attention", type=Path, metavar="PNG", help="also draw the attention (e.g. translate)")

    a = sub.add_parser("attention", help="draw what a trained model attends to, per layer and head")
    a.add_argument("run", type=Path)
    a.add_argument("input", help="text, or an image file for vision tasks")
    a.add_argument("--out", type=Path, default=Path("attention.png"), help="PNG grid of layers x heads")
    a.add_argument("--html", type=Path, help="also an interactive, self-contained HTML view (hover a token)")

    g = sub.add_parser(
        "generate",
        help="generate with a trained model (text, images, music; HF's decoding options)",
        epilog="Sampling draws among the 50 most likely tokens unless --top-k is given, as Hugging Face's "
        "generate; --top-k 0 samples from the whole vocabulary.",
    )
    g.add_argument("run", type=Path)
    g.add_argument("--prompt", help="text to continue (text tasks)")
    g.add_argument("--class", dest="class_label", help="class to generate (class-conditional tasks, e.g. pixels)")
    g.add_argument("--prompt-chorale", type=int, help="start from this held-out chorale (chorales)")
    g.add_argument("--out", type=Path, help="file to write (image grid, MIDI, ...) for tasks that make files")
    for name in _decoding_flags():  # one flag per GenerationConfig field that declares one
        _add_decoding_flag(g, name)
    g.add_argument("--seed", type=int, help="seed for sampling")
    g.add_argument("--no-stream", action="store_true", help="print the text when done instead of as it comes")

    s = sub.add_parser("serve", help="serve language-model runs behind the OpenAI-compatible HTTP API")
    s.add_argument("runs", type=Path, nargs="*", help="run directories of text-generating tasks")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--name", action="append", help="model id for each run (default: the directory name)")
    s.add_argument("--pdf", type=Path, help="also serve a chat-with-this-PDF web page at /")
    s.add_argument("--base-url", help="OpenAI-compatible endpoint answering the PDF questions (else extractive)")
    s.add_argument("--model", help="model name at --base-url (default: its first model)")

    cp = sub.add_parser("chat-pdf", help="ask questions about a PDF; answers cite their pages")
    cp.add_argument("pdf", type=Path)
    cp.add_argument("--question", help="ask one question and exit (default: an interactive prompt)")
    cp.add_argument("--base-url", help="OpenAI-compatible endpoint (OpenAI, llama.cpp, ollama, tinyformers serve)")
    cp.add_argument("--model", help="model name at --base-url (default: its first model)")
    cp.add_argument("--top-k", type=int, default=3, help="passages retrieved per question")
    cp.add_argument("--json", action="store_true", help="print the answer, pages and passages as JSON")

    em = sub.add_parser("embed", help="sentence embeddings (all-MiniLM-L6-v2) of a text file or a CSV column")
    em.add_argument("input", type=Path, help="a text file (one text per line), or a CSV file with --column")
    em.add_argument("--out", required=True, type=Path, help="OUT.npy (+ OUT.npy.ids.txt) or OUT.safetensors")
    em.add_argument("--column", help="embed this column of a CSV file")
    em.add_argument("--id-column", help="the CSV column holding each row's id (default: its line number)")
    em.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    em.add_argument("--overwrite", action="store_true", help="replace existing output files")
    em.add_argument("--no-progress", action="store_true", help="no progress bar")

    ch = sub.add_parser("challenge", help="answer the Challenge: every task's minimal recipe vs its baselines")
    ch.add_argument("--tasks", help="comma-separated tasks (default: every task with a scorecard)")
    ch.add_argument(
        "--budget-minutes",
        type=float,
        help="one training budget for every task (default: each task's stated budget, its page's)",
    )
    ch.add_argument(
        "--budget-ref-minutes",
        type=float,
        help="budget in reference minutes (on a machine with the stated fp32 matmul GFLOP/s, docs/challenge.md), "
        "scaled by this machine's measured rate: the same compute on a slow and a fast machine",
    )
    ch.add_argument("--out", type=Path, default=Path("challenge"), help="directory for runs, plots and REPORT.md")
    ch.add_argument("--quick", action="store_true", help="tiny models and a few steps: checks the pipeline only")
    ch.add_argument("--force", action="store_true", help="retrain tasks that already finished in --out")
    ch.add_argument("--search", action="store_true", help="also sweep depth x width for the minimal model")
    ch.add_argument("--tolerance", type=float, default=0.01, help="'minimal' = within this fraction of the best")
    ch.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what the budget counts: wall-clock, or the CPU time of each training (fair on a busy machine)",
    )

    x = sub.add_parser("export", help="export a trained decoder LM in Hugging Face GPT-2 format")
    x.add_argument("run", type=Path)
    x.add_argument("--out", required=True, type=Path, help="directory for config.json + model.safetensors")

    return p


def _decoding_flags() -> list[str]:
    """The decoding options that are ``generate`` flags: the :class:`GenerationConfig` fields with a ``Flag``."""
    return [f.name for f in fields(GenerationConfig) if f.metadata["flag"] is not None]


def _add_decoding_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """``--top-k`` for ``top_k``: type, default and help line from the field's declaration."""
    f = next(f for f in fields(GenerationConfig) if f.name == name)
    flag, kind = f.metadata["flag"], GenerationConfig.option_type(name)
    default = f.default if flag.default is MISSING else flag.default
    option = "--" + name.replace("_", "-")
    if kind is bool:  # a switch that turns the option on (its default is False)
        parser.add_argument(option, action="store_true", help=flag.help)
    else:
        parser.add_argument(option, type=kind, default=default, help=flag.help)


MAX_NEW_TOKENS = 100_000


def _refuse_others(name: str, options: dict[str, Any], accepted: tuple[str, ...]) -> dict[str, Any]:
    """The options that were given; one the task does not declare is a one-line error naming its flag
    (``--num-beams`` for a classifier), not a TypeError."""
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in accepted:
            flag = {"class_label": "class"}.get(key, key).replace("_", "-")
            raise UserError(f"task {name!r} does not take --{flag}")
    return given


def cmd_generate(args: argparse.Namespace) -> int:
    from tinyformers.engine.task import GeneratesFiles, GeneratesText
    from tinyformers.tasks import load_run

    task, cfg, meta, model = load_run(args.run)
    if not isinstance(task, GeneratesText | GeneratesFiles):
        raise UserError(f"task {task.name!r} does not generate; try `tinyformers predict`")
    if not 0 <= args.max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(f"--max-new-tokens must be between 0 and {MAX_NEW_TOKENS}")
    # passed to the task under HF's names (the flags are GenerationConfig's fields)
    options = {k: v for k in [*_decoding_flags(), "seed"] if (v := getattr(args, k)) is not None}
    extra = {"class_label": args.class_label, "prompt_chorale": args.prompt_chorale}
    if isinstance(task, GeneratesFiles):  # images, music: the task writes files and returns lines to print
        extra = _refuse_others(task.name, extra, task.file_options)
        prompt = {"prompt": args.prompt} if args.prompt is not None else {}  # the task says why it takes none
        try:
            lines = task.generate_file(model, cfg, meta, args.out, **options, **extra, **prompt)
        except ValueError as e:
            raise UserError(str(e)) from None
        for line in lines:
            print(line)
        return 0
    if args.prompt is None:
        raise UserError("give a prompt to continue with --prompt, e.g. --prompt 'ROMEO:'")
    _refuse_others(task.name, {**extra, "out": args.out}, ())
    stream = not args.no_stream and args.num_beams == 1 and args.num_return_sequences == 1
    shown: list[str] = []  # the prompt is printed with the first new text, so an error prints nothing else

    def show(text: str) -> None:
        print(("" if shown else args.prompt) + text, end="", flush=True)
        shown.append(text)

    if stream:
        options["streamer"] = show
    try:
        texts = task.generate(model, cfg, meta, args.prompt, **options)
    except ValueError as e:
        raise UserError(str(e)) from None
    if stream:
        print("" if shown else args.prompt)
        return 0
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sequence {i + 1} ---")
        print(args.prompt + text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tinyformers.apps.serve import serve

    if args.name and len(args.name) != len(args.runs):
        raise UserError(f"give one --name per run ({len(args.runs)} runs, {len(args.name)} names)")
    if not args.runs and args.pdf is None:
        raise UserError("give run directories to serve, or --pdf FILE for the chat-with-a-PDF page")
    serve(args.runs, args.host, args.port, args.name, args.pdf, args.base_url, args.model)
    return 0


def cmd_chat_pdf(args: argparse.Namespace) -> int:
    from tinyformers.apps import chatpdf

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    index = chatpdf.PdfIndex(args.pdf)

    def respond(question: str) -> None:
        result = chatpdf.answer(index, question, args.top_k, args.base_url, args.model)
        print(json.dumps(result, indent=2) if args.json else chatpdf.format_answer(result), flush=True)

    if args.question is not None:
        respond(args.question)
        return 0
    pages = max(p.page for p in index.passages)
    print(
        f"{args.pdf.name}: {len(index.passages)} passages from {pages} pages. "
        "Ask a question (empty line or Ctrl-D quits)."
    )
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            break
        if not question:
            break
        try:
            respond(question)
        except UserError as e:  # one bad question does not end the session
            print(f"error: {e}", file=sys.stderr)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from tinyformers.apps.embed import embed_file

    paths, n = embed_file(
        args.input, args.out, args.column, args.id_column, args.batch_size, args.overwrite, not args.no_progress
    )
    print(f"wrote {n} embeddings to {' and '.join(map(str, paths))}")
    return 0


def cmd_challenge(args: argparse.Namespace) -> int:
    from tinyformers.apps.challenge import run_challenge
    from tinyformers.engine.accel import keep_freed_memory

    if args.budget_minutes is not None and args.budget_minutes <= 0:
        raise UserError("--budget-minutes must be > 0")
    if args.budget_ref_minutes is not None and args.budget_ref_minutes <= 0:
        raise UserError("--budget-ref-minutes must be > 0")
    if args.budget_ref_minutes is not None and args.budget_minutes is not None:
        raise UserError("give --budget-minutes or --budget-ref-minutes, not both")
    if not 0 < args.tolerance < 1:
        raise UserError("--tolerance must be between 0 and 1")
    keep_freed_memory()  # as train does: every training of the challenge runs in this process
    command = (
        "tinyformers " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("tinyformers") else "tinyformers challenge"
    )
    report = run_challenge(
        args.tasks,
        args.out,
        args.budget_minutes,
        args.quick,
        args.force,
        args.search,
        args.tolerance,
        command,
        args.clock,
        args.budget_ref_minutes,
    )
    print(f"wrote {report}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tinyformers.core.interop import export_gpt2
    from tinyformers.core.models import DecoderLM
    from tinyformers.tasks import load_run

    _, _, _, model = load_run(args.run)
    if not isinstance(model, DecoderLM):
        raise UserError(f"{args.run}: only decoder-only language models export to the GPT-2 format")
    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out}: exists and is not empty; choose a new directory")
    try:
        export_gpt2(model, args.out)
    except ValueError as e:
        hint = "GPT-2 has learned positions and biases: train with --set positions=learned bias=true"
        raise UserError(f"{args.run}: {e} ({hint})") from None
    print(f"wrote {args.out}/config.json and model.safetensors (load with GPT2LMHeadModel.from_pretrained)")
    return 0


def _settings(args: argparse.Namespace) -> list[str]:
    extra = [f"{k}={v}" for k in ("max_steps", "max_time", "seed", "device") if (v := getattr(args, k)) is not None]
    return list(args.set) + extra


def cmd_list() -> int:
    from tinyformers.tasks import TASKS

    width = max(map(len, TASKS))
    for name, cls in sorted(TASKS.items()):
        task = cls()
        status = task.data_status(task.Config())
        print(f"{name:<{width}}  {'ready' if status is None else 'data missing'}  {cls.summary}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tinyformers.engine.accel import keep_freed_memory, set_threads
    from tinyformers.engine.distributed import is_main_process
    from tinyformers.engine.rundir import RunDir
    from tinyformers.engine.task import apply_overrides
    from tinyformers.engine.trainer import train
    from tinyformers.tasks import get_task, read_run_config

    task = get_task(args.task)
    base = task.Config()
    if args.resume:  # continue with the run's own settings (a --set or budget flag may change them)
        if not RunDir(args.out).config.exists():
            raise UserError(f"{args.out}: nothing to resume (no run there)")
        saved_task, base, _ = read_run_config(args.out)
        if saved_task.name != task.name:
            raise UserError(f"{args.out} holds a run of task {saved_task.name!r}, not {task.name!r}")
    cfg = apply_overrides(base, _settings(args))
    set_threads()  # one per physical core; one per process under torchrun; OMP_NUM_THREADS wins
    keep_freed_memory()  # glibc keeps what a step frees for the next one (TINYFORMERS_MALLOC=default: not)
    metrics = train(
        task,
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        logger=args.logger,
    )
    if is_main_process():  # under torchrun, rank 0 reports
        print(json.dumps(metrics, indent=2))
        print(f"saved run to {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tinyformers.engine.rundir import RunDir
    from tinyformers.engine.trainer import evaluate_run
    from tinyformers.tasks import get_task

    task = get_task(RunDir(args.run).task_name())
    print(json.dumps(evaluate_run(task, args.run, args.set), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tinyformers.engine.task import Predicts
    from tinyformers.tasks import load_run

    task, cfg, meta, model = load_run(args.run)
    if not isinstance(task, Predicts):
        raise UserError(f"task {task.name!r} has no predict")
    options = {
        "num_beams": args.num_beams,
        "length_penalty": args.length_penalty,
        "show_attention": args.show_attention,
    }
    outputs = task.predict(model, cfg, meta, args.inputs, **_refuse_others(task.name, options, task.predict_options))
    for inp, out in zip(args.inputs, outputs, strict=True):
        print(f"{inp}\t{out}")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from tinyformers.engine.task import ViewsAttention
    from tinyformers.tasks import load_run

    task, cfg, meta, model = load_run(args.run)
    if not isinstance(task, ViewsAttention):
        raise UserError(f"task {task.name!r} has no attention view")
    for path in task.attention(model, cfg, meta, args.input, out=args.out, html=args.html):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "list": lambda: cmd_list(),
        "train": lambda: cmd_train(args),
        "eval": lambda: cmd_eval(args),
        "predict": lambda: cmd_predict(args),
        "translate": lambda: cmd_predict(args),
        "attention": lambda: cmd_attention(args),
        "generate": lambda: cmd_generate(args),
        "export": lambda: cmd_export(args),
        "serve": lambda: cmd_serve(args),
        "chat-pdf": lambda: cmd_chat_pdf(args),
        "embed": lambda: cmd_embed(args),
        "challenge": lambda: cmd_challenge(args),
    }
    try:
        return commands[args.command]()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training (loading data, generating): nothing to save
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
