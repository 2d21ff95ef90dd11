"""The scoring benchmark: its equality check fails loudly, its last line is a contract."""

import json
import re

import numpy as np
import pytest
import torch

from qaq_assets.cli import main
from qaq_assets.lib.bench import BenchMismatch, check_equal, run_bench
from qaq_assets.lib.reference import mean_nlls, naive_pair_logprobs
from qaq_assets.lib.scorer import PairScorer, tokenize_pairs
from qaq_assets.lib.templates import build_layouts
from qaq_assets_tests.conftest import CODE_PAIRS


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
                "--data",
                str(tmp_path / "*.jsonl"),
            ]
        )
        == 0
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"speedup_vs_naive=[\d.]+ tokens_per_s=[\d.]+ fraction_of_matmul_peak=[\d.]+", last)


def test_memory_bench_prints_peaks_for_each_size(capsys):
    assert main(["bench", "memory", "--samples", "200,400", "--tokens", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["samples"] for line in lines[:2]] == [200, 400]
    assert re.fullmatch(
        r"streamed_peak_growth_per_logprob_mib=-?[\d.]+ streamed_peak_growth_per_sample_bytes=-?\d+ "
        r"streamed_peak_mib=[\d.]+ collected_peak_mib=[\d.]+",
        lines[-1],
    )
