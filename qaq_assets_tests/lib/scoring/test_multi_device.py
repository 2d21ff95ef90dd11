"""One replica per device: chunks spread over replicas, results in order, scores as on one device."""

import threading
import time

import pytest

from qaq_assets.lib.ingest.records import read_shard
from qaq_assets.lib.scoring.backends import LocalBackend, MultiDeviceBackend, ScorerOptions, local_devices
from qaq_assets.lib.scoring.engine.models import load_model
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets_tests.conftest import CODE_PAIRS, TINY, rows_of


def test_every_visible_gpu_gets_a_replica_unless_one_device_is_named():
    assert local_devices("auto", visible_gpus=0) == ["cpu"]
    assert local_devices("auto", visible_gpus=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert local_devices("cuda", visible_gpus=2) == ["cuda:0", "cuda:1"]
    assert local_devices("cuda:1", visible_gpus=4) == ["cuda:1"]
    assert local_devices("cpu", visible_gpus=4) == ["cpu"]


class Recording(LocalBackend):
    """A replica that notes which chunks it scored and holds each a moment, as a busy GPU would."""

    def __init__(self, name, *args):
        super().__init__(*args)
        self.name, self.scored = name, []

    def score_chunks(self, chunks, on_pass=None):
        for scored in super().score_chunks(chunks, on_pass):
            time.sleep(0.2)
            self.scored.append((threading.current_thread().name, len(scored.tokens)))
            yield scored


def replica(name):
    # A model of its own per replica, as on separate GPUs.
    loaded = load_model(TINY, device="cpu", dtype="float32")
    options = ScorerOptions()
    return Recording(name, loaded, options.scorer(loaded), options.sequence_budget(loaded))


def test_replicas_share_the_chunks_and_the_lake_gets_what_one_device_writes(tmp_path, make_shard):
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    single = score_shard(Lake(tmp_path / "one"), samples, "s", replica("one"), commit_every=2)
    replicas = [replica("a"), replica("b")]
    backend = MultiDeviceBackend(replicas)
    progress = []
    spread = score_shard(Lake(tmp_path / "two"), samples, "s", backend, commit_every=2, on_progress=progress.append)
    assert all(r.scored for r in replicas)  # six chunks of two, both replicas busy
    assert sum(len(r.scored) for r in replicas) == 6
    assert progress and progress[-1].samples_done == len(CODE_PAIRS)  # passes reported from both threads
    assert rows_of(spread).equals(rows_of(single))  # row by row, every log-prob, in order
    assert backend.describe_forward().endswith(", 2 devices")


def test_replicas_of_different_models_are_refused():
    first = replica("a")
    other = load_model("random:tiny-llama:7", device="cpu", dtype="float32")
    options = ScorerOptions()
    with pytest.raises(RuntimeError, match="replicas disagree"):
        MultiDeviceBackend([first, LocalBackend(other, options.scorer(other), 2048)])
