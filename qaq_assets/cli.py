"""``qaq``: a thin command line over the asset graph."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from qaq_assets.lib.errors import Interrupted, QaqError
from qaq_assets.lib.models import DEFAULT_MODEL_SPEC
from qaq_assets.lib.selection import STRATEGIES, SelectionConfig


def _add_lake_options(parser: argparse.ArgumentParser, versioned: bool = False) -> None:
    parser.add_argument("--lake", required=True, help="lake directory or URI (s3://bucket/prefix, ...)")
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="deltalake storage option for an object-store lake; repeatable",
    )
    if versioned:
        parser.add_argument("--version", type=int, default=None, help="curated_subset Delta version (default latest)")


def _storage_options(args: argparse.Namespace) -> dict[str, str]:
    from qaq_assets.lib.lake import storage_options_from_env

    malformed = [option for option in args.storage_option if "=" not in option]
    if malformed:
        raise QaqError(f"--storage-option takes KEY=VALUE, not {malformed[0]!r}")
    return storage_options_from_env() | dict(option.split("=", 1) for option in args.storage_option)


def _lake(args: argparse.Namespace):
    from qaq_assets.lib.lake import Lake

    return Lake(args.lake, _storage_options(args))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_lake_options(parser)
    parser.add_argument("--label-field", default="defect", help="planted-label field, carried but never scored")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per forward pass")
    parser.add_argument("--commit-every", type=int, default=256, help="samples per score-cache commit")
    parser.add_argument("--verbose", action="store_true", help="show Dagster's run logs")
    parser.add_argument("--backend", default="local", choices=["local", "ray"], help="where forward passes run")
    parser.add_argument("--ray-address", default="", help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--ray-replicas", type=int, default=0, help="model replicas on Ray (default: one per GPU)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="SPEC",
        help=f"model spec, KEY=SPEC or SPEC; repeat for strong then weak (default {DEFAULT_MODEL_SPEC})",
    )
    parser.add_argument("--template", default="auto", choices=["auto", "chat", "plain"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    _add_forward(parser)


def _add_forward(parser: argparse.ArgumentParser) -> None:
    from qaq_assets.lib.scorer import FORWARDS

    parser.add_argument(
        "--forward",
        default="fused",
        choices=FORWARDS,
        help="scoring forward pass: fused (compiled element-wise steps), fused-eager, or the model's own (reference)",
    )


def _settings(args: argparse.Namespace):
    from qaq_assets.settings import Settings

    return Settings(
        lake=args.lake,
        models=tuple(args.models or [DEFAULT_MODEL_SPEC]),
        template=args.template,
        device=args.device,
        dtype=args.dtype,
        forward=args.forward,
        batch_tokens=args.batch_tokens,
        commit_every=args.commit_every,
        progress_bar=True,
        backend=args.backend,
        ray_address=args.ray_address,
        ray_replicas=args.ray_replicas,
        storage_options=_storage_options(args),
    )


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_curation(args: argparse.Namespace, selection: SelectionConfig):
    from qaq_assets.lib.signals import SignalWatch
    from qaq_assets.pipeline import curate_files

    with SignalWatch() as signals:
        return curate_files(
            args.paths,
            _settings(args),
            selection,
            label_field=args.label_field,
            verbose=args.verbose,
            replace_shard=getattr(args, "replace_shard", False),
            warn=_warn,
            signals=signals,
        )


def _curate(args: argparse.Namespace) -> int:
    selection = SelectionConfig(strategy=args.strategy, budget=args.budget, band_low=args.band_low, strata=args.strata)
    summary = _run_curation(args, selection)
    if not summary.registered:
        return 2  # no file could be a shard (each said why); nothing was created
    print(f"shards failed: {', '.join(summary.failed_shards) or 'none'}")
    print(
        f"time: {summary.seconds:.1f}s total, {summary.scoring_seconds:.1f}s scoring"
        + (f" ({summary.samples_scored / summary.scoring_seconds:.2f} samples/s)" if summary.samples_scored else "")
    )
    print("table versions: " + " ".join(f"{name}={version}" for name, version in summary.versions.items()))
    print(summary.last_line())
    return 1 if summary.failed else 0


def _evaluate(args: argparse.Namespace) -> int:
    from qaq_assets.lib.curation import prepare
    from qaq_assets.lib.evaluation import auroc_table, evaluate, rates_table, write_report

    summary = _run_curation(args, SelectionConfig())
    if not summary.registered:
        return 2
    if summary.failed:
        print(f"failed: {', '.join(summary.failed)}; evaluating what was scored")
    keys = [spec.key for spec in _settings(args).model_specs]
    budgets = [float(b) for b in args.budgets.split(",")]
    evaluation = evaluate(prepare(_lake(args), keys, SelectionConfig()), budgets, seed=args.seed)
    print(rates_table(evaluation))
    print()
    print(auroc_table(evaluation))
    report = write_report(evaluation, args.report_dir)
    print(f"\nreport: {report}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from qaq_assets.lib.reporting import summary_text

    print(summary_text(_lake(args), args.version))
    return 0


def _bench_scoring(args: argparse.Namespace) -> int:
    import glob
    from pathlib import Path

    import torch

    from qaq_assets.lib.bench import load_bench_pairs, report_lines, run_bench
    from qaq_assets.lib.models import load_model, resolve_dtype

    paths = [Path(p) for p in sorted(glob.glob(args.data))]
    queries, answers = load_bench_pairs(paths, args.samples)
    loaded = load_model(args.model, device=args.device, dtype="float32")
    scorer_dtype = resolve_dtype(args.dtype, loaded.device)
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {loaded.device}; model {loaded.model_id} ({loaded.parameters / 1e6:.1f}M params), "
        f"scorer dtype {scorer_dtype}"
    )
    result = run_bench(
        loaded,
        queries,
        answers,
        scorer_dtype,
        template=args.template,
        batch_tokens=args.batch_tokens,
        forward=args.forward,
    )
    for line in report_lines(result):
        print(line)
    return 0


def _bench_memory(args: argparse.Namespace) -> int:
    import tempfile

    from qaq_assets.lib.memory_bench import main as memory_bench

    with tempfile.TemporaryDirectory() as workdir:
        memory_bench([int(n) for n in args.samples.split(",")], args.tokens, workdir)
    return 0


def _bench_pipeline(args: argparse.Namespace) -> int:
    from qaq_assets.benchmarks.pipeline import main as pipeline_bench

    pipeline_bench(args.samples, args.commit_every)
    return 0


def _lineage(args: argparse.Namespace) -> int:
    import json

    from qaq_assets.lib.export import lineage_record

    print(json.dumps(lineage_record(_lake(args), args.version), indent=2, default=str))
    return 0


def _export(args: argparse.Namespace) -> int:
    from qaq_assets.lib.export import export_curated

    written = export_curated(_lake(args), args.out, args.format, args.version)
    print(f"wrote {written} samples to {args.out} ({args.format})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qaq_assets.lib.reporting import html_report

    page = html_report(_lake(args), args.version)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"report: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qaq", description="Curate code-instruction data with QAQ scores.")
    commands = parser.add_subparsers(dest="command", required=True)

    curate = commands.add_parser("curate", help="ingest, score and curate files (each file is one shard)")
    curate.add_argument("paths", nargs="+")
    curate.add_argument("--budget", type=float, default=0.25)
    curate.add_argument("--strategy", default="auto", choices=["auto", *STRATEGIES])
    curate.add_argument("--band-low", type=float, default=0.5)
    curate.add_argument("--strata", type=int, default=10)
    curate.add_argument(
        "--replace-shard",
        action="store_true",
        help="let a file take over a shard key registered to another file (its samples replace that shard's)",
    )
    _add_run_options(curate)
    curate.set_defaults(handler=_curate)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    scoring = bench_kinds.add_parser("scoring", help="the scorer vs the naive one-sample, four-pass reference")
    scoring.add_argument("--samples", type=int, default=48)
    scoring.add_argument("--model", default=DEFAULT_MODEL_SPEC)
    scoring.add_argument("--data", default="data/shards/*.jsonl", help="glob of shard files to take samples from")
    scoring.add_argument("--template", default="auto", choices=["auto", "chat", "plain"])
    scoring.add_argument("--device", default="auto")
    scoring.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    scoring.add_argument("--batch-tokens", type=int, default=4096)
    _add_forward(scoring)
    scoring.set_defaults(handler=_bench_scoring)
    memory = bench_kinds.add_parser("memory", help="peak memory of writing one shard's log-probs, by shard size")
    memory.add_argument("--samples", default="10000,40000", help="shard sizes to compare")
    memory.add_argument("--tokens", type=int, default=150, help="query and answer tokens per sample")
    memory.set_defaults(handler=_bench_memory)
    pipeline = bench_kinds.add_parser(
        "pipeline", help="the lake side of scoring (cache, token_logprobs, qaq_scores) with precomputed log-probs"
    )
    pipeline.add_argument("--samples", type=int, default=50_000)
    pipeline.add_argument("--commit-every", type=int, default=256, help="samples per score-cache commit")
    pipeline.set_defaults(handler=_bench_pipeline)

    evaluation = commands.add_parser("evaluate", help="compare strategies on data with planted-defect labels")
    evaluation.add_argument("paths", nargs="+")
    evaluation.add_argument("--budgets", default="0.1,0.25,0.5")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    evaluation.add_argument("--report-dir", default="evaluation", help="where report.md and its plots go")
    _add_run_options(evaluation)
    evaluation.set_defaults(handler=_evaluate)

    lineage = commands.add_parser("lineage", help="what produced a curated version (inputs, models, config)")
    _add_lake_options(lineage, versioned=True)
    lineage.set_defaults(handler=_lineage)

    export = commands.add_parser("export", help="write a curated version's kept samples for SFT trainers")
    _add_lake_options(export, versioned=True)
    export.add_argument("--format", default="messages-jsonl", choices=["messages-jsonl", "alpaca-jsonl", "parquet"])
    export.add_argument("--out", required=True)
    export.set_defaults(handler=_export)

    report = commands.add_parser("report", help="a self-contained HTML report of a curated version")
    _add_lake_options(report, versioned=True)
    report.add_argument("--out", default="curation_report.html")
    report.set_defaults(handler=_report)

    summary = commands.add_parser("summary", help="decisions and planted-defect rates of a curated version")
    _add_lake_options(summary, versioned=True)
    summary.set_defaults(handler=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("QAQ_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Interrupted as stop:
        print(f"qaq {args.command}: {stop}; nothing further was published", file=sys.stderr)
        return 128 + stop.signum
    except QaqError as error:
        print(f"qaq {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
