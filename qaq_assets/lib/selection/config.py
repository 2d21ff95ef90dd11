"""Selection's settings: which rule, what budget, where the band sits, how strata are cut."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import ClassVar

from qaq_assets.lib.setting_fields import AT_LEAST_ONE, SELECTION, Bounds, check_fields, setting

# The method as published, its baselines, and named extensions beyond the paper (one name per
# line: a tuple unpacked by position shifts every later name when one is inserted).
RMI_BAND = "rmi-band"
DIFF = "diff"
IFD = "ifd"
PPL = "ppl"
RANDOM = "random"
RMI_BAND_CODE = "rmi-band+code"
RMI_BAND_CHECKS = "rmi-band+checks"
PPL_CHECKS = "ppl+checks"
STRATEGIES = (RMI_BAND, DIFF, IFD, PPL, RANDOM, RMI_BAND_CODE, RMI_BAND_CHECKS, PPL_CHECKS)
AUTO = "auto"
RECOMPUTE = "recompute"
STABLE = "stable"
DECISION_POLICIES = (RECOMPUTE, STABLE)


@dataclass(frozen=True)
class SelectionConfig:
    GROUP: ClassVar[str] = SELECTION

    strategy: str = setting(
        AUTO, "selection rule; auto = rmi-band+checks with one model, diff with two", choices=(AUTO, *STRATEGIES)
    )
    budget: float = setting(0.25, "share of the distinct samples kept, in (0, 1]", bounds=Bounds(0, 1, True))
    band_low: float = setting(
        0.5,
        "where the kept RMI band starts within each stratum, in [0, 1)",
        bounds=Bounds(0, 1, high_open=True),
    )
    band_guard: float = setting(
        0.8,
        "rmi-band+checks: no RMI rank above this (within its stratum) is kept, however the band widens to "
        "fill the budget (the top ranks are answers that restate their query), in (0, 1]",
        bounds=Bounds(0, 1, low_open=True),
    )
    completeness_margin: float = setting(
        3.0,
        "rmi-band+checks: an answer is incomplete (likely cut off) when the model finds the end of its turn "
        "this many nats less likely than for the median answer that ends the same way (a code block, a "
        "sentence, bare code); > 0",
        bounds=Bounds(low=0, low_open=True),
    )
    strata: int = setting(10, "NLL(Q) strata the RMI ranks are taken within", bounds=Bounds(1, 10_000))
    diff_threshold: float = setting(
        0.1, "diff: keep rank_strong - rank_weak above this, in (-1, 1)", bounds=Bounds(-1, 1, True, True)
    )
    min_stratum_size: int = setting(
        10, "fewer strata on small inputs: at least this many samples each", bounds=AT_LEAST_ONE
    )
    seed: int = setting(0, "seed of the random baseline", bounds=Bounds(0, (1 << 63) - 1))
    near_duplicate_threshold: float = setting(
        0.85,
        "MinHash Jaccard at which a sample repeats an earlier one, at least 0.5 (>= 1 disables)",
        bounds=Bounds(low=0.5),
    )
    allow_partial: bool = setting(
        False, "publish a curation that leaves out ingested shards lacking a model's scores (otherwise refused)"
    )
    decisions: str = setting(
        RECOMPUTE,
        "re-curation policy: recompute (every sample decided again over the whole corpus; new data can flip "
        "earlier decisions) or stable (samples of the previous version keep their decision; only new samples "
        "are decided, by the rule over the whole corpus)",
        choices=DECISION_POLICIES,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def effective_strata(self, n: int) -> int:
        return max(1, min(self.strata, n // self.min_stratum_size))

    def resolved_strategy(self, n_models: int) -> str:
        if self.strategy == AUTO:
            # One model: the paper's band behind the checks the evaluation supports (docs/evaluation.md).
            return DIFF if n_models >= 2 else RMI_BAND_CHECKS
        if self.strategy == DIFF and n_models < 2:
            raise ValueError("strategy 'diff' needs two models (strong first, weak second)")
        return self.strategy

    def to_json(self) -> str:
        # The selection fields alone, also where this is part of the whole Settings.
        return json.dumps({field.name: getattr(self, field.name) for field in fields(SelectionConfig)}, sort_keys=True)

    def sha(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
