"""The scoring benchmark: its equality check fails loudly, its last line is a contract."""

import json
import re

import numpy as np
import pytest
import torch

from qaq_assets.benchmarks.scoring import BenchMismatch, check_equal, run_bench
from qaq_assets.cli import main
from qaq_assets.lib.scoring.engine.reference import mean_nlls, naive_pair_logprobs
from qaq_assets.lib.scoring.engine.scorer import PairScorer, tokenize_pairs
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.store.tables import CURATED_SUBSET
from qaq_assets_tests.helpers import CODE_PAIRS

pytestmark = pytest.mark.slow  # each bench runs whole, most in a fresh process


def test_naive_reference_equals_the_two_pass_scorer(tiny_model):
    layouts = build_layouts("chat", tiny_model.tokenizer)
    queries, answers = zip(*CODE_PAIRS[:4], strict=True)
    pairs = tokenize_pairs(tiny_model.tokenizer, layouts, queries, answers, 2048)
    naive = mean_nlls([naive_pair_logprobs(tiny_model.model, layouts, p) for p in pairs])
    scored = mean_nlls(PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id).score(pairs))
    assert check_equal(naive, scored, 1e-5, "tiny") < 1e-5


def test_equality_check_fails_loudly_on_a_mismatch():
    reference = np.ones((3, 4))
    wrong = reference.copy()
    wrong[2, 3] += 0.01
    with pytest.raises(BenchMismatch, match="nll_query_given_answer of sample 2 differs by 0.01000"):
        check_equal(reference, wrong, 1e-3, "test")
    with pytest.raises(BenchMismatch):
        check_equal(reference, np.full((3, 4), np.nan), 1.0, "nan")


def test_bench_reports_a_broken_scorer(tiny_model, monkeypatch):
    real_score = PairScorer.score

    def off_by_a_bit(self, pairs, on_pass=None, batch_tokens=None):
        results = real_score(self, pairs, on_pass, batch_tokens)
        for result in results:
            result.query_given_answer = result.query_given_answer - 0.5
        return results

    monkeypatch.setattr(PairScorer, "score", off_by_a_bit)
    queries, answers = zip(*CODE_PAIRS[:3], strict=True)
    with pytest.raises(BenchMismatch, match="float32 scorer vs naive"):
        run_bench(tiny_model, list(queries), list(answers), torch.float32, log=lambda _: None)


def _shift_in_bfloat16(monkeypatch, scorer_shift: float, naive_shift: float) -> None:
    """Move NLL(Q|A) of whatever runs in bfloat16: the production scorer by ``scorer_shift``,
    the naive loop by ``naive_shift`` (the dtype's own drift, as a deep model shows it)."""
    from qaq_assets.benchmarks import scoring

    monkeypatch.undo()  # each call shifts from the real functions, not from the last shift
    real_score, real_naive = PairScorer.score, scoring.naive_pair_logprobs

    def in_bfloat16(model) -> bool:
        return next(model.parameters()).dtype == torch.bfloat16

    def score(self, pairs, on_pass=None, batch_tokens=None):
        results = real_score(self, pairs, on_pass, batch_tokens)
        for result in results if in_bfloat16(self.model) else []:
            result.query_given_answer = result.query_given_answer - scorer_shift
        return results

    def naive(model, layouts, pair):
        result = real_naive(model, layouts, pair)
        if in_bfloat16(model):
            result.query_given_answer = result.query_given_answer - naive_shift
        return result

    monkeypatch.setattr(PairScorer, "score", score)
    monkeypatch.setattr(scoring, "naive_pair_logprobs", naive)


def test_a_reduced_dtype_is_allowed_what_it_costs_the_naive_loop_and_no_more(tiny_model, monkeypatch):
    queries, answers = zip(*CODE_PAIRS[:3], strict=True)
    logged = []
    run_bench(tiny_model, list(queries), list(answers), torch.bfloat16, log=logged.append)
    equality = next(line for line in logged if line.startswith("equality:"))
    assert "(tolerance 0.150); naive bfloat16 vs naive float32 max |diff|" in equality

    # A deep model drifts 0.3 in bf16 whatever computes it: the scorer may sit as far from fp32.
    _shift_in_bfloat16(monkeypatch, scorer_shift=0.3, naive_shift=0.3)
    run_bench(tiny_model, list(queries), list(answers), torch.bfloat16, log=lambda _: None)
    # Twice that drift and more is the scorer's own error.
    _shift_in_bfloat16(monkeypatch, scorer_shift=0.7, naive_shift=0.3)
    with pytest.raises(BenchMismatch, match="bfloat16 scorer vs naive float32"):
        run_bench(tiny_model, list(queries), list(answers), torch.bfloat16, log=lambda _: None)
    # Without such drift, the floor holds.
    _shift_in_bfloat16(monkeypatch, scorer_shift=0.2, naive_shift=0.0)
    with pytest.raises(BenchMismatch, match="tolerance 0.15"):
        run_bench(tiny_model, list(queries), list(answers), torch.bfloat16, log=lambda _: None)


def test_a_profiler_that_cannot_run_costs_one_line_not_the_figures(tiny_model, monkeypatch):
    from qaq_assets.benchmarks import scoring

    def no_cupti(*args, **kwargs):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED\nmore")

    monkeypatch.setattr(scoring, "profile_lines", no_cupti)
    queries, answers = zip(*CODE_PAIRS[:3], strict=True)
    logged = []
    result = run_bench(tiny_model, list(queries), list(answers), torch.float32, profile_samples=2, log=logged.append)
    assert "profile unavailable: RuntimeError: CUPTI_ERROR_NOT_INITIALIZED" in logged
    assert result.fraction_of_matmul_peak > 0


def test_bench_command_prints_the_contract_line(tmp_path, capsys, make_shard):
    make_shard("bench", CODE_PAIRS)
    assert (
        main(
            [
                "bench",
                "scoring",
                "--model",
                "random:tiny-llama",
                "--samples",
                "6",
                "--dtype",
                "float32",
                "--profile",
                "3",
                "--data",
                str(tmp_path / "*.jsonl"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # Where the time went, for a figure that falls short on a GPU run: the matmuls are there.
    assert "profile of 3 pairs (self_cpu_time_total):" in out and "aten::mm" in out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"speedup_vs_naive=([\d.]+) tokens_per_s=([\d.]+) fraction_of_matmul_peak=([\d.]+)", last)
    speedup, tokens_per_s, fraction = map(float, match.groups())
    # Figures, not a timing assertion: tests share the machine (speed is the bench's own job).
    assert speedup > 0 and tokens_per_s > 0 and 0 < fraction
    assert re.search(r"equality: float32 max \|diff\| [\d.e-]+ nats/token over 6 samples", out)


def test_a_failing_model_leaves_the_others_measured_and_the_command_fails(tmp_path, capsys, make_shard):
    """On a GPU lent for minutes, one shape that fails must not cost the others' figures."""
    make_shard("bench", CODE_PAIRS[:4])
    arguments = ["bench", "scoring", "--model", "random:no-such-shape", "--model", "random:tiny-llama"]
    arguments += ["--samples", "4", "--naive-samples", "2", "--dtype", "float32", "--data", str(tmp_path / "*.jsonl")]
    assert main(arguments) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("random:no-such-shape failed: ") and "no-such-shape" in lines[0][30:]
    assert lines[-1].startswith("speedup_vs_naive=")
    assert "1 of the models failed: random:no-such-shape" in captured.err


def test_make_bench_gpu_benches_each_shape_alone_and_names_the_failed_ones(tmp_path, make_shard):
    """The one command a lent GPU runs: a shape that fails is named, the next still ends in its contract line."""
    import subprocess
    import sys

    from qaq_assets_tests.helpers import REPO

    make_shard("bench", CODE_PAIRS[:4])
    options = f"--device cpu --samples 4 --naive-samples 2 --dtype float32 --data {tmp_path / 'bench.jsonl'}"
    command = ["make", "--no-print-directory", "bench-gpu", f"PYTHON={sys.executable}"]
    command += [f"GPU_BENCH_OPTIONS={options}", "GPU_MODELS=random:no-such-shape random:tiny-llama"]
    command += ["GPU_LONG_MODELS=random:tiny-llama", "GPU_HEAD_OPTIONS=--device cpu --shapes smollm2-135m --rows 64"]
    command += ["GPU_LONG_OPTIONS=--device cpu --samples 2 --naive-samples 1 --dtype float32 --lengths long"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    blocks = run.stdout.split("== ")
    assert [block.splitlines()[0] for block in blocks[1:]] == [
        "random:no-such-shape",
        "random:tiny-llama",
        "random:tiny-llama, long answers",
        "output heads",
    ]
    assert "random:no-such-shape failed: " in blocks[1]
    assert blocks[2].strip().splitlines()[-1].startswith("speedup_vs_naive=")
    assert "random tokens, lengths log-normal" in blocks[3] and "speedup_vs_naive=" in blocks[3]
    assert blocks[4].strip().splitlines()[-2].startswith("shape=smollm2-135m rows=64")
    assert run.stdout.strip().splitlines()[-1] == "bench-gpu: failed: random:no-such-shape"


def test_bench_runs_on_a_bare_machine_without_polars_deltalake_or_dagster(tmp_path, make_shard):
    """A GPU image has torch, transformers, tokenizers and numpy only: the bench must not import the rest."""
    import subprocess
    import sys

    from qaq_assets.lib.scoring.engine.models import byte_level_tokenizer
    from qaq_assets_tests.helpers import REPO

    make_shard("bench", CODE_PAIRS[:5])
    byte_level_tokenizer().save_pretrained(tmp_path / "tok")
    arguments = ["bench", "scoring", "--model", "random:tiny-llama", "--samples", "12", "--naive-samples", "4"]
    arguments += ["--dtype", "float32", "--forward", "fused-eager", "--attention", "packed"]
    arguments += ["--data", str(tmp_path / "*.jsonl"), "--tokenizer", str(tmp_path / "tok"), "--device", "cpu"]
    script = (
        "import sys\n"
        "for name in ('polars', 'deltalake', 'dagster', 'pyarrow'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "from qaq_assets.cli import main\n"
        f"sys.exit(main({arguments!r}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    # Five distinct pairs, repeated to twelve; the naive reference times four.
    assert "12 samples," in run.stdout and "over 4 samples" in run.stdout
    assert re.search(r"tokenised at \d+ pairs/s on \d+ cores", run.stdout)  # can the host feed the card?
    assert "forward: fused, eager element-wise steps (not compiled), packed attention (flex, eager)" in run.stdout
    assert re.search(r"^mfu=[\d.]+ \(2 x params x forward tokens/s over the measured 2048\^3 float32", run.stdout, re.M)
    assert run.stdout.strip().splitlines()[-1].startswith("speedup_vs_naive=")


def test_memory_bench_shows_batched_score_reads_peak_below_whole_ones(capsys):
    assert main(["bench", "memory", "--shard-sizes", "2000,8000", "--tokens", "64"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    small, large = (json.loads(line) for line in lines[:2])
    assert (small["samples"], large["samples"]) == (2000, 8000)
    # Reading the shard's lists whole holds every log-prob list; in batches, one batch.
    assert large["batched_peak_mib"] < large["whole_peak_mib"]
    batched_growth = large["batched_peak_mib"] - small["batched_peak_mib"]
    assert batched_growth < large["whole_peak_mib"] - small["whole_peak_mib"]
    assert re.fullmatch(
        r"batched_peak_growth_per_logprob_mib=-?[\d.]+ batched_peak_growth_per_sample_bytes=-?\d+ "
        r"batched_peak_mib=[\d.]+ whole_peak_mib=[\d.]+",
        lines[-1],
    )


def test_pipeline_bench_writes_what_the_scoring_assets_write(tmp_path, make_shard, monkeypatch):
    import dagster as dg

    from qaq_assets.benchmarks.pipeline import run
    from qaq_assets.benchmarks.precomputed import PrecomputedBackend
    from qaq_assets.defs.partitions import SHARDS
    from qaq_assets.lib.store.lake import Lake
    from qaq_assets.lib.store.tables import QAQ_SCORES
    from qaq_assets_tests.helpers import graph, register_files

    figures = run(300, 64, tmp_path / "bench", log=lambda _: None)
    assert figures["samples"] == 300 and figures["samples_per_s"] > 0
    bench_scores = Lake(tmp_path / "bench" / "lake").scan(QAQ_SCORES).collect()

    # The same shard through the Dagster assets, the precomputed backend in place of the model.
    lake = Lake(tmp_path / "assets")
    shards = register_files(lake, [tmp_path / "bench" / "bench.jsonl"])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, shards)
    resources, (raw, token_logprobs, qaq_scores, _) = graph(lake, models=("bench=random:tiny-llama",))
    monkeypatch.setattr(
        type(resources["models"]),
        "scoring_backend",
        lambda self, key: PrecomputedBackend.for_pairs(*_texts(lake)),
    )
    assert dg.materialize([raw], partition_key="bench", instance=instance, resources=resources).success
    key = dg.MultiPartitionKey({"shard": "bench", "model": "bench"})
    assert dg.materialize(
        [token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources
    ).success
    asset_scores = lake.scan(QAQ_SCORES).collect()
    columns = ["sample_id", "nll_query", "nll_query_given_answer", "nll_answer", "nll_answer_given_query", "rmi"]
    assert bench_scores.height == 300
    assert bench_scores.select(columns).sort("sample_id").equals(asset_scores.select(columns).sort("sample_id"))


def _texts(lake):
    from qaq_assets.lib.store.tables import RAW_SAMPLES

    raw = lake.scan(RAW_SAMPLES).collect()
    return raw["instruction"], raw["response"]


def test_scale_bench_prints_its_figures_and_finds_the_planted_duplicates(tmp_path, capsys):
    from qaq_assets.benchmarks.scale import main as scale

    figures = scale(2000, 4, 2, str(tmp_path))
    out = capsys.readouterr().out
    dropped = re.search(r"dropped: ([\d,]+) exact and ([\d,]+) near duplicates of ([\d,]+) rows", out)
    exact, near, rows = (int(value.replace(",", "")) for value in dropped.groups())
    assert rows == 2500 and exact > 0 and near > 0  # 2% of each planted per shard
    assert re.fullmatch(
        r"ingest_samples_per_s=\d+ recurate_seconds=[\d.]+ peak_rss_mb=\d+ curated_version_bytes_per_sample=[\d.]+",
        out.strip().splitlines()[-1],
    )
    assert figures["curated_version_bytes_per_sample"] > 0


def test_scale_bench_keeps_its_lake_where_asked(tmp_path, capsys):
    from qaq_assets.benchmarks.scale import main as scale
    from qaq_assets.lib.store.lake import Lake

    scale(400, 2, 1, str(tmp_path / "kept"), keep=True)
    assert Lake(tmp_path / "kept" / "lake").version(CURATED_SUBSET) == 2  # both curated versions stay
    assert main(["bench", "scale", "--keep"]) == 2
    assert "--keep needs --workdir" in capsys.readouterr().err


def test_files_bench_reports_the_lake_and_the_instance_it_grew(tmp_path, capsys):
    from qaq_assets.benchmarks.files import main as files_bench

    files_bench(3, 1, str(tmp_path / "made"))  # a workdir that does not exist yet is made
    out = capsys.readouterr().out
    assert "Dagster after both: 13 shard partitions" in out and "instance storage" in out
    # A file per run (the 3 files, then the 10 more), not one per shard.
    assert re.search(r"per table \(data files; log files\): .*raw_samples [\d,]+ KiB in 2;", out)
    assert re.fullmatch(
        r"files_per_s=[\d.]+ per_file_overhead_ms=-?[\d.]+ incremental_seconds=[\d.]+ peak_rss_mb=\d+ "
        r"lake_to_input=[\d.]+ lake_files=\d+",
        out.strip().splitlines()[-1],
    )


def test_the_matmul_peak_is_its_best_window_not_a_window_slowed_by_other_work(monkeypatch):
    """MFU is measured against this peak: a peak lowered by a neighbour's work would inflate it."""
    from qaq_assets.benchmarks import scoring

    clock = {"now": 0.0, "calls": 0}

    def matmul(a, b):  # a fake clock: 10 ms a run, 100 ms while other work shares the machine
        clock["calls"] += 1
        clock["now"] += 0.1 if clock["calls"] <= 4 else 0.01
        return a

    monkeypatch.setattr(scoring.torch, "matmul", matmul)
    monkeypatch.setattr(scoring.time, "perf_counter", lambda: clock["now"])
    peak = scoring.matmul_gflops(torch.float32, torch.device("cpu"), size=100, seconds=1.0, windows=5)
    assert peak == pytest.approx(2 * 100**3 / 0.01 / 1e9)


def test_long_pairs_follow_the_length_profile_and_use_ordinary_tokens(tiny_model):
    from qaq_assets.benchmarks.scoring import LONG_MAX_TOKENS, long_pairs

    tokenizer = tiny_model.tokenizer
    pairs = long_pairs(tokenizer, 2000, longest=10_000)
    totals = np.array([len(p.query_ids) + len(p.answer_ids) for p in pairs])
    assert 900 <= np.median(totals) <= 1150 and 3500 <= np.percentile(totals, 95) <= 4700
    assert totals.max() == LONG_MAX_TOKENS  # the cap binds
    assert all(len(p.query_ids) >= 16 and p.answer_ids for p in pairs)
    used = {token for p in pairs[:50] for token in p.query_ids + p.answer_ids}
    assert not used & set(tokenizer.all_special_ids) and max(used) < len(tokenizer)
    assert max(len(p.query_ids) + len(p.answer_ids) for p in long_pairs(tokenizer, 200, longest=3000)) == 3000


def test_the_long_answer_bench_scores_thousands_of_tokens_per_pair_and_checks_them(tiny_model):
    logged = []
    queries, answers = zip(*CODE_PAIRS[:3], strict=True)
    result = run_bench(
        tiny_model,
        list(queries),
        list(answers),
        torch.float32,
        lengths="long",
        naive_samples=2,
        exact_check_samples=2,
        log=logged.append,
    )
    assert result.samples == 3 and result.content_tokens > 3 * 64
    assert "random tokens, lengths log-normal" in logged[0]
    assert any(line.startswith("equality: float32 max |diff|") for line in logged)
    assert result.attention_flops > 0


def test_the_head_bench_measures_both_heads_in_fresh_processes(capsys):
    assert main(["bench", "head", "--shapes", "smollm2-135m", "--rows", "256", "--dtype", "float32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    assert [row["head"] for row in rows] == ["logits", "vocab-blocks"]
    logits, blocks = rows
    # 49,152 columns of float32 logits per row in flight, against one 2,048-column block.
    assert logits["rows_in_flight"] == 30 * 2**20 // 4 // 49152 and blocks["rows_in_flight"] == 256
    assert all(row["seconds"] > 0 and row["peak_working_mib"] >= 0 for row in rows)
    assert re.fullmatch(
        r"shape=smollm2-135m rows=256 dtype=float32 device=cpu logits_seconds=[\d.]+ logits_peak_mib=[\d.]+ "
        r"vocab_blocks_seconds=[\d.]+ vocab_blocks_peak_mib=[\d.]+",
        lines[-1],
    )
    assert main(["bench", "head", "--shapes", "qwen3-0.6b"]) == 2  # one line naming the known shapes
