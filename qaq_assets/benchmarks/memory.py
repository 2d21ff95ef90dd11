"""``qaq bench memory``: peak memory of writing one shard's token_logprobs rows and computing its
qaq_scores from the per-token lists in the score cache, at several shard sizes: the lists read
in batches (what the asset does) vs all at once.

Each measurement runs in a fresh process, so its peak RSS is the write's own high-water mark.
The score cache is filled with synthetic log-probs first, in another process.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from qaq_assets.lib.scoring.backends.local import ScorerIdentity
from qaq_assets.lib.scoring.shard_scoring import SCORES_BATCH_ROWS, cached_keys, shard_rows, write_qaq_scores
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SCORE_CACHE, SUM_OF, TOKEN_LISTS, TOKEN_LOGPROBS

IDENTITY = ScorerIdentity("bench", "synthetic", "0" * 64, "float32", "bench-fingerprint", "plain-v2", 2048)
FILL_CHUNK = 2000


def _pairs(samples: int) -> pl.DataFrame:
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(samples)]
    return pl.DataFrame({"sample_id": [s[:32] for s in ids], "query_sha": ids, "answer_sha": [s[::-1] for s in ids]})


def fill_cache(root: str, samples: int, tokens: int) -> None:
    """Synthetic cache rows for ``samples`` samples of ``tokens`` query and answer tokens each."""
    lake, rng = Lake(root), np.random.default_rng(0)
    pairs = _pairs(samples)
    for start in range(0, samples, FILL_CHUNK):
        chunk = pairs.slice(start, FILL_CHUNK)
        n = chunk.height
        lists = {
            name: [(-rng.random(tokens)).astype(np.float32).tolist() for _ in range(n)]
            for name in (
                "query_logprobs",
                "answer_given_query_logprobs",
                "answer_logprobs",
                "query_given_answer_logprobs",
            )
        }
        lists["answer_end_logprobs"] = [[-0.5]] * n  # one end-of-turn token
        lake.append(
            SCORE_CACHE,
            pl.DataFrame(
                {
                    "model_fingerprint": IDENTITY.fingerprint,
                    "template_version": IDENTITY.template_version,
                    "max_sequence_tokens": IDENTITY.max_sequence_tokens,
                    "query_sha": chunk["query_sha"],
                    "answer_sha": chunk["answer_sha"],
                    "n_query_tokens": [tokens] * n,
                    "n_answer_tokens": [tokens] * n,
                    "query_truncated": [False] * n,
                    "answer_truncated": [False] * n,
                    **lists,
                    **{
                        SUM_OF[name]: [float(np.sum(values, dtype=np.float64)) for values in lists[name]]
                        for name in TOKEN_LISTS
                    },
                    "scored_at": datetime.now(UTC),
                },
                schema=SCORE_CACHE.schema,
            ),
        )


def _reset_peak_rss() -> None:
    # A child started by fork inherits its parent's resident high-water mark (a pytest process
    # holding models reads as ~1 GiB); Linux resets it to the current RSS on request.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_partition(root: str, samples: int, batched: bool) -> float:
    """Write the shard's rows and scores; returns the peak RSS in MiB of this process while it does."""
    _reset_peak_rss()
    lake = Lake(root)
    members = _pairs(samples).select("sample_id", "query_sha", "answer_sha").with_columns(shard=pl.lit("bench"))
    rows = shard_rows(IDENTITY, members, cached_keys(lake, IDENTITY, members))
    lake.replace_partition(TOKEN_LOGPROBS, rows, {"model_key": IDENTITY.model_key, "shard": "bench"})
    write_qaq_scores(lake, "bench", IDENTITY.model_key, batch_rows=SCORES_BATCH_ROWS if batched else samples)
    return _peak_rss_mib()


def _in_fresh_process(call: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import qaq_assets.benchmarks.memory as m; print({call})"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def run(sizes: list[int], tokens: int, workdir: str) -> list[dict]:
    results = []
    for samples in sizes:
        root = f"{workdir}/lake-{samples}"
        _in_fresh_process(f"m.fill_cache({root!r}, {samples}, {tokens})")
        row = {"samples": samples, "logprob_mib": round(samples * tokens * 4 * 4 / 2**20, 1)}
        for batched in (True, False):
            peak = float(_in_fresh_process(f"m.write_partition({root!r}, {samples}, {batched})"))
            row["batched_peak_mib" if batched else "whole_peak_mib"] = round(peak, 1)
        results.append(row)
    return results


def main(sizes: list[int], tokens: int, workdir: str) -> None:
    results = run(sizes, tokens, workdir)
    for row in results:
        print(json.dumps(row))
    first, last = results[0], results[-1]
    growth = (last["batched_peak_mib"] - first["batched_peak_mib"]) / max(
        last["logprob_mib"] - first["logprob_mib"], 1e-9
    )
    per_sample = (
        (last["batched_peak_mib"] - first["batched_peak_mib"]) * 2**20 / max(last["samples"] - first["samples"], 1)
    )
    print(
        f"batched_peak_growth_per_logprob_mib={growth:.3f} batched_peak_growth_per_sample_bytes={per_sample:.0f} "
        f"batched_peak_mib={last['batched_peak_mib']} whole_peak_mib={last['whole_peak_mib']}"
    )
