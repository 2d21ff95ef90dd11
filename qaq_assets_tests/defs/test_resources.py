"""The scoring resource: models loaded once per process, the cache bounded, keys kept apart."""

import qaq_assets.defs.resources as resources
from qaq_assets.lib.scoring.engine.models import ModelSpec


def test_models_load_once_per_process_and_the_cache_stays_bounded(monkeypatch):
    loads = []
    real_load = resources.load_model
    monkeypatch.setattr(
        resources,
        "load_model",
        lambda spec, device, dtype: loads.append(spec.spec) or real_load(spec, device=device, dtype=dtype),
    )
    monkeypatch.setattr(resources, "_MODEL_CACHE", type(resources._MODEL_CACHE)())
    first = resources.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    again = resources.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    renamed = resources.cached_model(ModelSpec.parse("b=random:tiny-llama:0"), "cpu", "float32")
    assert again is first and loads == ["random:tiny-llama:0"]
    # The same weights under another partition key: loaded once, named for the key asked.
    assert renamed.model is first.model and renamed.spec.key == "b" and first.spec.key == "a"
    for seed in (1, 2):
        resources.cached_model(ModelSpec.parse(f"random:tiny-llama:{seed}"), "cpu", "float32")
    assert len(resources._MODEL_CACHE) == resources._MODEL_CACHE_SIZE
    resources.cached_model(ModelSpec.parse("a=random:tiny-llama:0"), "cpu", "float32")
    assert loads == ["random:tiny-llama:0", "random:tiny-llama:1", "random:tiny-llama:2", "random:tiny-llama:0"]
