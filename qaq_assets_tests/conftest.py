"""Fixtures shared by the suite; plain helpers are in ``helpers.py``."""

from pathlib import Path

import pytest

from qaq_assets.lib.scoring.engine.models import load_model
from qaq_assets.lib.store.lake import Lake
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, write_jsonl


@pytest.fixture
def make_shard(tmp_path):
    """Write a JSONL shard of (instruction, response) pairs; returns its path."""

    def make(name: str, pairs=CODE_PAIRS, extra_records=()) -> Path:
        records = [{"instruction": q, "response": a, "defect": "none"} for q, a in pairs]
        return write_jsonl(tmp_path / f"{name}.jsonl", records + list(extra_records))

    return make


@pytest.fixture(scope="session")
def tiny_model():
    return load_model(TINY, device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def _no_shared_dagster_home(monkeypatch):
    """Each test runs on an ephemeral instance unless it sets DAGSTER_HOME itself (make exports the
    repository's, which test runs must neither need nor fill)."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")
