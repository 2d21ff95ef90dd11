"""``qaq``: a thin command line over the asset graph."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys

from qaq_assets.lib.errors import Interrupted, QaqError
from qaq_assets.lib.reports.export_formats import FORMATS as EXPORT_FORMATS
from qaq_assets.lib.reports.export_formats import format_for
from qaq_assets.lib.settings import BY_NAME, INGEST, LAKE, RUNNER, SCORING, SELECTION, Setting, Settings, in_group
from qaq_assets.lib.store.faults import StorageFault


def _add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """A flag for ``setting``: its help, type and choices from its declaration; unset, the
    environment (QAQ_<NAME>) or the declared default applies."""
    default = setting.default if setting.kind is not dict else "{}"
    help_text = f"{setting.help} [env {setting.env_var}; default {default}]"
    if setting.kind is list:
        parser.add_argument(setting.cli_flag, dest=setting.name, action="append", metavar="SPEC", help=help_text)
    elif setting.kind is bool:
        # --flag and --no-flag: a setting on by default (--execute) is turned off on the command line.
        parser.add_argument(
            setting.cli_flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
    elif setting.kind is dict:
        parser.add_argument(setting.cli_flag, dest=setting.name, action="append", metavar="KEY=VALUE", help=help_text)
    else:
        parser.add_argument(
            setting.cli_flag, dest=setting.name, type=setting.kind, choices=setting.choices, help=help_text
        )


def _add_settings(
    parser: argparse.ArgumentParser, *groups: str, names: tuple[str, ...] = (), without: tuple[str, ...] = ()
) -> None:
    for setting in in_group(*groups) + [BY_NAME[name] for name in names]:
        if setting.name not in without:
            _add_setting(parser, setting)


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, overridden by the flags given."""
    settings = Settings.from_env()
    given = {name: getattr(args, name) for name in vars(args) if name in BY_NAME}
    for name, value in given.items():
        if BY_NAME[name].kind is list and value:  # --fields a=b,c=d as --fields a=b --fields c=d
            given[name] = [part.strip() for item in value for part in item.split(",") if part.strip()]
    options = given.pop("storage_options", None)
    if options:
        malformed = [option for option in options if "=" not in option]
        if malformed:
            raise QaqError(f"--storage-option takes KEY=VALUE, not {malformed[0]!r}")
        given["storage_options"] = settings.storage_options | dict(option.split("=", 1) for option in options)
    return settings.updated(**given)


def _add_lake_options(parser: argparse.ArgumentParser, versioned: bool = False) -> None:
    _add_settings(parser, LAKE)
    if versioned:
        parser.add_argument(
            "--version",
            default=None,
            metavar="VERSION",
            help="the curated version: latest (default), N, vN, or a time such as 2026-12-06T05:00 (latest by then)",
        )


def _lake(args: argparse.Namespace):
    from qaq_assets.lib.store.lake import Lake

    settings = _settings(args)
    return Lake(settings.lake, settings.storage_options)


def _add_run_options(parser: argparse.ArgumentParser, *groups: str, without: tuple[str, ...] = ()) -> None:
    _add_settings(parser, LAKE, SCORING, RUNNER, INGEST, *groups, without=without)
    parser.add_argument("--verbose", action="store_true", help="show Dagster's run logs")


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_curation(args: argparse.Namespace):
    from qaq_assets.runner.curate import curate_files
    from qaq_assets.runner.signals import SignalWatch

    settings = _settings(args)
    if not args.verbose:
        _quiet_libraries()
    settings.check_before_work()  # a model that cannot be found fails here, before any work
    with SignalWatch() as signals:
        return curate_files(
            args.paths,
            settings,
            verbose=args.verbose,
            replace_shard=getattr(args, "replace_shard", False),
            warn=_warn,
            signals=signals,
            progress=True,
        )


def _quiet_libraries() -> None:
    """Without --verbose the terminal shows the stages' progress and one line per failure: the
    libraries' own warnings and progress bars (Dagster's beta notices, transformers' weight
    loading) stay out of it."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _curate(args: argparse.Namespace) -> int:
    summary = _run_curation(args)
    if not summary.registered:
        return 2  # no file could be a shard (each said why); nothing was created
    print(f"shards failed: {', '.join(summary.failed_shards) or 'none'}")
    if summary.left_out:
        print(f"left out of the curation (not scored by every model): {', '.join(summary.left_out)}")
    print(
        f"time: {summary.seconds:.1f}s total, {summary.scoring_seconds:.1f}s scoring"
        + (f" ({summary.samples_scored / summary.scoring_seconds:.2f} samples/s)" if summary.samples_scored else "")
    )
    print("table versions: " + " ".join(f"{name}={version}" for name, version in summary.versions.items()))
    if summary.quarantined:
        _print_quarantine(args, summary.registered)
    for warning in summary.warnings:
        print(f"warning: {warning}")
    print(summary.last_line())
    if summary.refused_partial or summary.nothing_usable:
        return 2  # nothing was published: the curation would have left shards out, or no file was usable
    if summary.failed:
        return 1
    return ODD_RESULT if summary.warnings else 0


# Exit status of a curation that succeeded but whose result is odd (it says why): the lake is written.
ODD_RESULT = 3


def _evaluate(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.evaluation import (
        auroc_table,
        evaluate,
        language_table,
        rates_table,
        signal_table,
        write_report,
    )
    from qaq_assets.lib.reports.natural_evaluation import graded, graded_tables, grades_of
    from qaq_assets.lib.selection.config import SelectionConfig
    from qaq_assets.lib.selection.curation import prepare
    from qaq_assets.lib.setting_fields import values_of

    summary = _run_curation(args)
    if not summary.registered:
        return 2
    if summary.failed:
        print(f"failed: {', '.join(summary.failed)}; evaluating what was scored")
    settings = _settings(args)
    keys = [spec.key for spec in settings.model_specs]
    budgets = [float(b) for b in args.budgets.split(",")]
    selection = values_of(SelectionConfig, settings)
    # What was named, not the whole lake (which may hold other data).
    candidates = prepare(_lake(args), keys, selection, shards=summary.registered)
    evaluation = evaluate(candidates, budgets, seed=settings.seed)
    print(rates_table(evaluation))
    print()
    print(auroc_table(evaluation))
    print()
    print(signal_table(evaluation))
    print()
    print(language_table(evaluation))
    natural = ""
    grades = grades_of(_lake(args), summary.registered, args.grade_field)
    if grades.height:  # answers graded by running their tests: the natural-defect figures
        natural = graded_tables(*graded(candidates, grades, budgets, seed=settings.seed))
        print()
        print(natural)
    report = write_report(evaluation, args.report_dir, natural=natural)
    print(f"\nreport: {report}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.summary import summary_text

    print(summary_text(_lake(args), args.version))
    return 0


def _bench_scoring(args: argparse.Namespace) -> int:
    import glob
    from pathlib import Path

    from qaq_assets.benchmarks.scoring import main as scoring_bench

    paths = [Path(p) for p in sorted(glob.glob(args.data))]
    failed = scoring_bench(
        _settings(args), paths, args.samples, args.naive_samples, args.tokenizer, args.profile, args.lengths
    )
    if failed:
        print(f"qaq bench scoring: {len(failed)} of the models failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _bench_memory(args: argparse.Namespace) -> int:
    import tempfile

    from qaq_assets.benchmarks.memory import main as memory_bench

    with tempfile.TemporaryDirectory() as workdir:
        memory_bench([int(n) for n in args.shard_sizes.split(",")], args.tokens, workdir)
    return 0


def _bench_head(args: argparse.Namespace) -> int:
    from qaq_assets.benchmarks.head import SHAPES
    from qaq_assets.benchmarks.head import main as head_bench

    shapes = args.shapes.split(",")
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        raise QaqError(f"unknown shapes {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    return 1 if head_bench(shapes, args.rows, args.dtype, args.device) else 0


def _bench_pipeline(args: argparse.Namespace) -> int:
    from qaq_assets.benchmarks.pipeline import main as pipeline_bench

    pipeline_bench(args.samples, _settings(args).commit_every)
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    from qaq_assets.benchmarks.scale import main as scale_bench

    scale_bench(args.samples, args.shards, args.workers, args.workdir, keep=args.keep)
    return 0


def _bench_files(args: argparse.Namespace) -> int:
    from qaq_assets.benchmarks.files import main as files_bench

    _quiet_libraries()
    keep = _settings(args).keep_token_logprobs
    files_bench(args.files, args.records_per_file, args.workdir, model=args.model, keep_token_logprobs=keep)
    return 0


def _bench_sft(args: argparse.Namespace) -> int:
    import tempfile

    from qaq_assets.benchmarks.sft import main as sft_bench

    _quiet_libraries()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        sft_bench(_settings(args), args.corpus, args.held_out, args.size, args.budget, workdir)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.explain import explain_row, find, text_report

    lake = _lake(args)
    row, lineage = find(lake, args.sample, args.version)
    model_key = lineage["models"][0]["model_key"]
    explained = explain_row(lake, row, lineage, _tokenizer_of(args, model_key), _scorer_of(args, model_key))
    print(text_report(explained, colour=sys.stdout.isatty()))
    return 0


def _scorer_of(args: argparse.Namespace, model_key: str):
    """What opens the configured model's backend under ``model_key`` (to score a sample's token
    view again where its lists were not kept), or None where no such model is configured."""
    from qaq_assets.lib.scoring.backends.policy import backend_for
    from qaq_assets.lib.scoring.config import ScoringConfig
    from qaq_assets.lib.setting_fields import values_of

    settings, spec = _configured_spec(args, model_key)
    if spec is None:
        return None
    config = values_of(ScoringConfig, settings)
    # One sample does not repay a compile: the fused forward's steps run eagerly (the same numbers).
    config = dataclasses.replace(config, forward="fused-eager" if config.forward == "fused" else config.forward)
    return lambda: backend_for(config, spec)


def _tokenizer_of(args: argparse.Namespace, model_key: str):
    """The configured model's tokenizer under ``model_key`` (to name the query's tokens), or None."""
    from qaq_assets.lib.scoring.engine.models import ModelLoadError, tokenizer_of

    settings, spec = _configured_spec(args, model_key)
    if spec is None:
        return None
    try:
        return tokenizer_of(spec, settings.device, settings.dtype)
    except ModelLoadError:
        return None


def _configured_spec(args: argparse.Namespace, model_key: str):
    """The settings, and the configured model spec under ``model_key`` (None where none is)."""
    settings = _settings(args)
    return settings, next((spec for spec in settings.model_specs if spec.key == model_key), None)


def _lineage(args: argparse.Namespace) -> int:
    import json

    from qaq_assets.lib.reports.export import lineage_record

    print(json.dumps(lineage_record(_lake(args), args.version), indent=2, default=str))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from qaq_assets.lib.ingest.config import IngestConfig
    from qaq_assets.lib.ingest.lake_repair import repair_lake
    from qaq_assets.lib.setting_fields import values_of
    from qaq_assets.lib.store.lake import Lake

    settings = _settings(args)
    report = repair_lake(Lake(settings.lake, settings.storage_options), values_of(IngestConfig, settings), args.dry_run)
    print("\n".join(report.lines(applied=not args.dry_run)))
    return 1 if report.lost else 0


def _compact(args: argparse.Namespace) -> int:
    from qaq_assets.lib.store.compaction import compact_lake

    compacted = compact_lake(_lake(args))
    print("\n".join(table.line() for table in compacted) if compacted else "nothing to compact")
    return 0


def _print_quarantine(args: argparse.Namespace, shards: list[str] | None, reason: str | None = None) -> int:
    from qaq_assets.lib.reports.quarantine import quarantined, summary_lines

    rows = quarantined(_lake(args), shards, reason)
    print("\n".join(summary_lines(rows)) if rows.height else "nothing quarantined")
    return rows.height


def _quarantine(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.summary import shorten

    shown = _print_quarantine(args, [args.shard] if args.shard else None, args.reason)
    if shown and args.rows:
        from qaq_assets.lib.reports.quarantine import quarantined

        rows = quarantined(_lake(args), [args.shard] if args.shard else None, args.reason).head(args.rows)
        for row in rows.iter_rows(named=True):
            print(f"{row['shard']}:{row['row_index']} {row['reason']}: {row['detail']}")
            print(f"    {shorten(row['raw'].replace(chr(10), ' '), 200)}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from qaq_assets.runner.ui import run_ui

    return run_ui(args.workspace, args.dagster_args)


def _diff(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.resolve import previous_version, resolve_version
    from qaq_assets.lib.reports.version_diff import diff_versions, summary_lines

    lake = _lake(args)
    new = resolve_version(lake, args.new)
    old = args.old if args.old is not None else previous_version(lake, new)
    if old is None:
        raise QaqError(f"curated version {new} is the first recorded: nothing to compare it with")
    print("\n".join(summary_lines(diff_versions(lake, old, new))))
    return 0


def _export(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.export import export_curated

    written = export_curated(_lake(args), args.out, args.format, args.version)
    print(f"wrote {written} samples to {args.out} ({format_for(args.out, args.format)})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reports.export import lineage_record
    from qaq_assets.lib.reports.output_files import atomic_output
    from qaq_assets.lib.reports.summary import html_report

    lake = _lake(args)
    model_key = lineage_record(lake, args.version)["models"][0]["model_key"]
    page = html_report(lake, args.version, _tokenizer_of(args, model_key))
    with atomic_output(args.out) as partial:
        partial.write_text(page, encoding="utf-8")
    print(f"report: {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qaq", description="Curate code-instruction data with QAQ scores.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_curate(commands)
    _add_bench(commands)
    _add_evaluate(commands)
    _add_lake_commands(commands)
    return parser


def _add_curate(commands: argparse._SubParsersAction) -> None:
    """`qaq curate`."""
    curate = commands.add_parser("curate", help="ingest, score and curate files (each file is one shard)")
    curate.add_argument("paths", nargs="+")
    curate.add_argument(
        "--replace-shard",
        action="store_true",
        help="let a file take over a shard key registered to another file (its samples replace that shard's)",
    )
    _add_run_options(curate, SELECTION)
    curate.set_defaults(handler=_curate)


def _add_bench(commands: argparse._SubParsersAction) -> None:
    """`qaq bench ...`: one sub-command per benchmark."""
    bench = commands.add_parser("bench", help="benchmarks")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    _add_bench_scoring(bench_kinds)
    memory = bench_kinds.add_parser(
        "memory", help="peak memory of one shard's scores from its cached log-probs, by shard size"
    )
    memory.add_argument(
        "--shard-sizes", default="10000,40000", help="shard sizes (samples) to compare, comma-separated"
    )
    memory.add_argument("--tokens", type=int, default=150, help="query and answer tokens per sample")
    memory.set_defaults(handler=_bench_memory)
    head = bench_kinds.add_parser("head", help="the output head alone: logits vs vocab-blocks, seconds and peak memory")
    head.add_argument(
        "--shapes", default="smollm2-135m,qwen2-0.5b", help="model shapes (vocabulary, width), comma-separated"
    )
    head.add_argument("--rows", type=int, default=4096, help="scored rows (a pass's tokens)")
    head.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    head.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    head.set_defaults(handler=_bench_head)
    pipeline = bench_kinds.add_parser(
        "pipeline", help="the lake side of scoring (cache, token_logprobs, qaq_scores) with precomputed log-probs"
    )
    pipeline.add_argument("--samples", type=int, default=50_000)
    _add_settings(pipeline, names=("commit_every",))
    pipeline.set_defaults(handler=_bench_pipeline)
    scale = bench_kinds.add_parser(
        "scale", help="ingest, score (precomputed log-probs), curate, land a shard, re-curate, at N samples"
    )
    scale.add_argument("--samples", type=int, default=100_000)
    scale.add_argument("--shards", type=int, default=100)
    scale.add_argument("--workers", type=int, default=2, help="processes for ingest and scoring")
    scale.add_argument("--workdir", default=None, help="where the corpus and lake go (default: the temp directory)")
    scale.add_argument(
        "--keep", action="store_true", help="keep the corpus and lake in --workdir (e.g. to measure curation alone)"
    )
    scale.set_defaults(handler=_bench_scale)

    many = bench_kinds.add_parser(
        "files", help="orchestration cost of many small files, curate to curated version (a tiny random model)"
    )
    many.add_argument("--files", type=int, default=5000, help="files to write and curate")
    many.add_argument("--records-per-file", type=int, default=1, help="records in each file")
    many.add_argument("--workdir", default=None, help="where the files and lakes go (default: the temp directory)")
    many.add_argument(
        "--model",
        default=None,
        help="score with this model instead (e.g. bundled: a real tokenizer, so the token tables' size is a user's)",
    )
    _add_settings(many, names=("keep_token_logprobs",))
    many.set_defaults(handler=_bench_files)

    _add_bench_sft(bench_kinds)


def _add_bench_scoring(bench_kinds: argparse._SubParsersAction) -> None:
    """`qaq bench scoring`."""
    scoring = bench_kinds.add_parser(
        "scoring", help="the scorer vs the naive one-sample, four-pass reference (each --model in turn)"
    )
    scoring.add_argument("--samples", type=int, default=48, help="pairs to score (the shards' repeated if fewer)")
    scoring.add_argument(
        "--naive-samples", type=int, default=48, help="of those, how many the naive reference times and checks"
    )
    scoring.add_argument("--data", default="data/shards/*.jsonl", help="glob of JSONL shard files to take samples from")
    scoring.add_argument(
        "--tokenizer", default=None, help="a tokenizer saved with save_pretrained, for random:ARCH models"
    )
    scoring.add_argument(
        "--lengths",
        default="data",
        choices=("data", "long"),
        help="data: the shards' pairs; long: random-token pairs of median 1,024, p95 4,096, max 8,192 tokens",
    )
    scoring.add_argument(
        "--profile", type=int, default=0, metavar="PAIRS", help="also print the scorer's busiest operations over PAIRS"
    )
    _add_settings(
        scoring, names=("models", "template", "device", "dtype", "forward", "attention", "head", "batch_tokens")
    )
    scoring.set_defaults(handler=_bench_scoring)


def _add_bench_sft(bench_kinds: argparse._SubParsersAction) -> None:
    """`qaq bench sft`."""
    sft = bench_kinds.add_parser(
        "sft", help="fine-tune the model on subsets chosen by each rule; NLL on HumanEval and held-out code"
    )
    sft.add_argument("--corpus", default="data/eval/pypi.jsonl", help="the noisy corpus subsets are drawn from")
    sft.add_argument(
        "--held-out", default="data/eval/stdlib_humaneval.jsonl", help="a corpus whose clean pairs measure the models"
    )
    sft.add_argument(
        "--size",
        default="reduced",
        choices=["reduced", "full"],
        help="reduced: 128 pairs, one epoch, sized for a CPU; full: the whole corpus, two epochs, for a GPU",
    )
    sft.add_argument("--budget", type=float, default=0.25, help="share of the corpus each subset keeps")
    sft.add_argument("--workdir", default=None, help="where the lake and files go (default: the temp directory)")
    _add_settings(sft, SCORING)
    sft.set_defaults(handler=_bench_sft)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    """`qaq evaluate`."""
    evaluation = commands.add_parser("evaluate", help="compare strategies on data with planted-defect labels")
    evaluation.add_argument("paths", nargs="+")
    evaluation.add_argument(
        "--budgets", default="0.1,0.25,0.5", help="budgets to compare, comma-separated (default 0.1,0.25,0.5)"
    )
    evaluation.add_argument("--report-dir", default="evaluation", help="where report.md and its plots go")
    evaluation.add_argument(
        "--grade-field",
        default="pass_fraction",
        help="record field holding a graded label (the fraction of its tests an answer passes): where present, "
        "the kept subsets' mean grade and pass rate against input and random, per language (default pass_fraction)",
    )
    _add_run_options(evaluation, SELECTION, without=("budget",))  # --budgets compares several
    evaluation.set_defaults(handler=_evaluate)


def _add_lake_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that read or mend a lake (lineage, repair, compact, quarantine, diff, export, explain, report,
    summary) and `qaq ui`."""
    lineage = commands.add_parser("lineage", help="what produced a curated version (inputs, models, config)")
    _add_lake_options(lineage, versioned=True)
    lineage.set_defaults(handler=_lineage)

    repair = commands.add_parser(
        "repair", help="find a lake's lost files, drop them and restore their shards from the registered files"
    )
    _add_settings(repair, LAKE, INGEST)
    repair.add_argument("--dry-run", action="store_true", help="say what is damaged and what would be done")
    repair.set_defaults(handler=_repair)

    compact = commands.add_parser(
        "compact", help="merge each table's small files and checkpoint its log (older versions stay readable)"
    )
    _add_lake_options(compact)
    compact.set_defaults(handler=_compact)

    ui = commands.add_parser("ui", help="the Dagster UI (dagster dev) that stops on SIGINT/SIGTERM, all of it")
    ui.add_argument("--workspace", default="workspace.yaml", help="the Dagster workspace file (default workspace.yaml)")
    ui.add_argument("dagster_args", nargs=argparse.REMAINDER, help="more arguments for dagster dev (after --)")
    ui.set_defaults(handler=_ui)

    quarantine = commands.add_parser("quarantine", help="rows that were not ingested, by shard and reason, and why")
    _add_lake_options(quarantine)
    quarantine.add_argument("--shard", default=None, help="one shard (default: every shard)")
    quarantine.add_argument("--reason", default=None, help="one reason, e.g. missing_instruction")
    quarantine.add_argument("--rows", type=int, default=0, help="also print this many rows whole (default 0)")
    quarantine.set_defaults(handler=_quarantine)

    diff = commands.add_parser(
        "diff", help="what changed between two curated versions: shards, samples, flipped decisions, settings"
    )
    _add_lake_options(diff)
    diff.add_argument("--from", dest="old", default=None, metavar="VERSION", help="default: the version before --to")
    diff.add_argument("--to", dest="new", default="latest", metavar="VERSION", help="default: latest")
    diff.set_defaults(handler=_diff)

    export = commands.add_parser("export", help="write a curated version's kept samples for SFT trainers")
    _add_lake_options(export, versioned=True)
    export.add_argument(
        "--format",
        default=None,
        choices=EXPORT_FORMATS,
        help="messages-jsonl (OpenAI messages), sharegpt-jsonl, alpaca-jsonl, original (each record in the shape "
        "it came in), or parquet; default: from --out's extension (.jsonl: messages-jsonl, .parquet: parquet)",
    )
    export.add_argument("--out", required=True, help="the file to write (replaced whole, or left as it was)")
    export.set_defaults(handler=_export)

    explain = commands.add_parser("explain", help="why one sample was kept or dropped, token by token")
    explain.add_argument(
        "sample", help="a sample id (or 6+ of its first characters), a record id, or SHARD:ROW (rows from 1)"
    )
    _add_lake_options(explain, versioned=True)
    _add_settings(explain, names=("models", "template", "max_sequence_tokens", "forward", "device", "dtype"))
    explain.set_defaults(handler=_explain)

    report = commands.add_parser("report", help="a self-contained HTML report of a curated version")
    _add_lake_options(report, versioned=True)
    report.add_argument(
        "--out", default="curation_report.html", help="the HTML file to write (default curation_report.html)"
    )
    _add_settings(report, names=("models", "device", "dtype"))
    report.set_defaults(handler=_report)

    summary = commands.add_parser("summary", help="decisions and planted-defect rates of a curated version")
    _add_lake_options(summary, versioned=True)
    summary.set_defaults(handler=_summary)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("QAQ_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Interrupted as stop:
        print(f"qaq {args.command}: {stop}; nothing further was published", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        # whoever read stdout has gone (`qaq summary | head -1`): stop quietly, as a Unix filter does
        _discard_stdout()
        return 128 + signal.SIGPIPE
    except StorageFault as error:
        print(f"qaq {args.command}: {_with_readable_versions(str(error), args)}", file=sys.stderr)
        return 1
    except QaqError as error:
        print(f"qaq {args.command}: {error}", file=sys.stderr)
        return 2
    except BaseException as error:  # noqa: BLE001 - storage faults (a Rust panic among them) become one line
        line = _storage_fault_line(error, args)
        if line is None:
            raise
        print(f"qaq {args.command}: {line}", file=sys.stderr)
        return 1


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests redirect it to a buffer)
        pass


def _storage_fault_line(error: BaseException, args: argparse.Namespace) -> str | None:
    """A storage fault in one line, with the versions still readable where a commit is broken;
    None for any other error (KeyboardInterrupt and SystemExit included)."""
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return None
    from qaq_assets.lib.store.faults import fault_of

    fault = fault_of(error, _lake_root(args))
    return None if fault is None else _with_readable_versions(str(fault), args)


def _lake_root(args: argparse.Namespace) -> str | None:
    return getattr(args, "lake", None) or os.environ.get(BY_NAME["lake"].env_var) or BY_NAME["lake"].default


def _with_readable_versions(line: str, args: argparse.Namespace) -> str:
    """``line`` (a storage fault) with the versions of its table still readable, where its
    commit log is broken."""
    root, table = _lake_root(args), line.split(":", 1)[0]
    if root and ("commit" in line or "log has a gap" in line) and table.isidentifier():
        from qaq_assets.lib.store.lake import Lake

        readable = Lake(root).readable_versions(table)
        if readable:
            from qaq_assets.lib.reports.resolve import spans

            line += f"; readable versions of {table}: {spans(readable)} (pass --version N)"
    return line


if __name__ == "__main__":
    sys.exit(main())
