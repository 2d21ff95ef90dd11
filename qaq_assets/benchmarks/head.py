"""``qaq bench head``: the output head alone, ``logits`` vs ``vocab-blocks``, at a model's
width and vocabulary: seconds and peak working memory for a pass's scored rows.

Each head runs in a fresh process (on CPU the peak is the growth of peak RSS past the
inputs; on CUDA ``torch.cuda.max_memory_allocated`` past them), so one head's freed blocks
never hide the other's peak. Random weights: the head's cost does not depend on their values."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

from qaq_assets.lib.scoring.engine.models import RANDOM_ARCHITECTURES
from qaq_assets.lib.scoring.engine.output_head import OutputHead

# (vocabulary, width): the bundled model's, and those of the shapes the GPU bench measures.
SHAPES = {
    "smollm2-135m": (49152, 576),
    **{
        name: (architecture.shape["vocab_size"], architecture.shape["hidden_size"])
        for name, architecture in RANDOM_ARCHITECTURES.items()
        if architecture.real_shape
    },
}


class _HeadOnly(torch.nn.Module):
    """What :class:`OutputHead` reads of a model: its output embeddings and config."""

    def __init__(self, vocab: int, width: int, dtype: torch.dtype, device: str):
        super().__init__()
        self.lm_head = torch.nn.Linear(width, vocab, bias=False, dtype=dtype, device=device)
        self.config = SimpleNamespace(final_logit_softcapping=None)

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.lm_head


def _peak_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(head: str, shape: str, rows: int, dtype: str, device: str, repeats: int = 3) -> dict:
    """One head over ``rows`` scored rows: best seconds of ``repeats``, peak working memory."""
    vocab, width = SHAPES[shape]
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    with torch.inference_mode():
        # Compiled where production compiles it: the logits head's fused reduction on CUDA.
        on_cuda = device.startswith("cuda")
        output = OutputHead(_HeadOnly(vocab, width, torch_dtype, device), compile=on_cuda, head=head)
        hidden = torch.randn(rows, width, dtype=torch_dtype, device=device)
        targets = torch.randint(0, vocab, (rows,), device=device)
        output.target_logprobs(hidden[:8], targets[:8])  # first-call allocations
        if on_cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) if on_cuda else _peak_bytes(device)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            output.target_logprobs(hidden, targets)
            if on_cuda:
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - started)
        working = _peak_bytes(device) - before
    return {
        "head": head,
        "shape": shape,
        "rows": rows,
        "rows_in_flight": min(rows, output.chunk_rows),
        "seconds": round(best, 4),
        "peak_working_mib": round(working / 2**20, 1),
        "peak_bytes_per_row_in_flight": round(working / min(rows, output.chunk_rows)),
    }


def run(shape: str, rows: int, dtype: str, device: str) -> list[dict]:
    """Both heads, each in a fresh process; a head that fails (out of memory) gives a row with
    ``failed``, not an exception: the other head's figures still come back."""
    results = []
    for head in ("logits", "vocab-blocks"):
        call = f"m.measure({head!r}, {shape!r}, {rows}, {dtype!r}, {device!r})"
        done = subprocess.run(
            [sys.executable, "-c", f"import json, qaq_assets.benchmarks.head as m; print(json.dumps({call}))"],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        else:
            cause = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            results.append({"head": head, "shape": shape, "rows": rows, "failed": cause})
    return results


def main(shapes: list[str], rows: int, dtype: str, device: str) -> int:
    """Print each head's figures and a line per shape; returns how many measurements failed."""
    failures = 0
    for shape in shapes:
        results = {row["head"]: row for row in run(shape, rows, dtype, device)}
        for row in results.values():
            print(json.dumps(row), flush=True)
        failures += sum("failed" in row for row in results.values())
        figures = " ".join(
            f"{head.replace('-', '_')}_seconds={row.get('seconds', 'failed')} "
            f"{head.replace('-', '_')}_peak_mib={row.get('peak_working_mib', 'failed')}"
            for head, row in results.items()
        )
        print(f"shape={shape} rows={rows} dtype={dtype} device={device} {figures}", flush=True)
    return failures
