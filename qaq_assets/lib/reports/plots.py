"""Pictures of a curation: RMI of kept vs dropped samples, NLL(Q) with its strata, decisions
by reason. PNG bytes, for Dagster metadata (a Markdown image) and the HTML report."""

from __future__ import annotations

import base64
import io

import polars as pl

from qaq_assets.lib.selection.curation import with_reason_code
from qaq_assets.lib.selection.rules import KEEP


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    _pyplot().close(figure)
    return buffer.getvalue()


def curation_png(curated: pl.DataFrame) -> bytes:
    """Three panels: RMI histogram (kept vs dropped), NLL(Q) histogram with strata edges,
    and rows per decision reason."""
    plt = _pyplot()
    scored = curated.filter(pl.col("rmi").is_not_null())
    kept = scored.filter(pl.col("decision") == KEEP)
    dropped = scored.filter(pl.col("decision") != KEEP)
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.8))

    bins = 30
    axes[0].hist(
        [dropped["rmi"].to_list(), kept["rmi"].to_list()],
        bins=bins,
        stacked=True,
        label=["dropped", "kept"],
        color=["#c8c8c8", "#2b8a3e"],
    )
    axes[0].set_title("RMI (nats/token): kept band vs dropped")
    axes[0].set_xlabel("rmi = NLL(Q) - NLL(Q|A)")
    axes[0].set_ylabel("samples")
    axes[0].legend()

    axes[1].hist(scored["nll_query"].to_list(), bins=bins, color="#4c6ef5")
    strata = scored.filter(pl.col("stratum").is_not_null()).group_by("stratum").agg(pl.col("nll_query").min())
    for edge in strata.sort("stratum")["nll_query"].to_list()[1:]:
        axes[1].axvline(edge, color="black", linewidth=0.8, linestyle=":")
    axes[1].set_title("NLL(Q) with stratum edges")
    axes[1].set_xlabel("nll_query")
    axes[1].set_ylabel("samples")

    reasons = (
        with_reason_code(curated)
        .with_columns(reason=pl.col("reason_code"))
        .group_by("decision", "reason")
        .len()
        .sort("len")
    )
    colours = ["#2b8a3e" if d == KEEP else "#adb5bd" for d in reasons["decision"]]
    axes[2].barh(reasons["reason"].to_list(), reasons["len"].to_list(), color=colours)
    axes[2].set_title("rows per decision reason")
    axes[2].set_xlabel("rows")
    return _png(figure)


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
