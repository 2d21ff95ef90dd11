"""The resources: models loaded once per process, the cache bounded, keys kept apart; storage
secrets never in Dagster's storage or its UI."""

import json
import os

import qaq_assets.lib.scoring.backends.policy as policy
from qaq_assets.cli import main
from qaq_assets.lib.scoring.engine.models import ModelSpec
from qaq_assets_tests.helpers import TINY_FLAGS, dagster_home, pair_records, write_jsonl


def test_models_load_once_per_process_and_the_cache_stays_bounded(monkeypatch):
    loads = []
    real_load = policy.load_model
    monkeypatch.setattr(
        policy,
        "load_model",
        lambda spec, device, dtype: loads.append(spec.spec) or real_load(spec, device=device, dtype=dtype),
    )
    monkeypatch.setattr(policy, "_MODEL_CACHE", type(policy._MODEL_CACHE)())
    first = policy.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    again = policy.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    renamed = policy.cached_model(ModelSpec.parse("b=random:tiny-llama:0"), "cpu", "float32")
    assert again is first and loads == ["random:tiny-llama:0"]
    # The same weights under another partition key: loaded once, named for the key asked.
    assert renamed.model is first.model and renamed.spec.key == "b" and first.spec.key == "a"
    for seed in (1, 2):
        policy.cached_model(ModelSpec.parse(f"random:tiny-llama:{seed}"), "cpu", "float32")
    assert len(policy._MODEL_CACHE) == policy._MODEL_CACHE_SIZE
    policy.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    assert loads == ["random:tiny-llama:0", "random:tiny-llama:1", "random:tiny-llama:2", "random:tiny-llama:0"]


def test_storage_option_secrets_stay_out_of_dagster(tmp_path, capsys, monkeypatch):
    secret = "planted-secret-7c1e9a"
    home = dagster_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    shard = write_jsonl(tmp_path / "s.jsonl", pair_records())
    args = ["curate", str(shard), "--lake", str(tmp_path / "lake"), *TINY_FLAGS]
    assert main([*args, "--storage-option", f"AWS_SECRET_ACCESS_KEY={secret}"]) == 0
    assert os.environ.get("QAQ_STORAGE_OPTIONS") is None  # restored after the runs
    leaked = [path for path in home.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaked == [] and any(home.rglob("*.db"))
    # What the UI shows of the lake resource: its config fields, none of which holds options.
    from qaq_assets.definitions import build_resources
    from qaq_assets.lib.settings import Settings

    monkeypatch.setenv("QAQ_STORAGE_OPTIONS", json.dumps({"AWS_SECRET_ACCESS_KEY": secret}))
    lake_resource = build_resources(Settings.from_env())["lake"]
    assert secret not in json.dumps(lake_resource.model_dump())
    assert lake_resource.lake().storage_options == {"AWS_SECRET_ACCESS_KEY": secret}
