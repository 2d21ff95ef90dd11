"""Scoring on a real local Ray cluster gives exactly the local backend's scores."""

import os
import subprocess
import sys
import time

import polars as pl
import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.local import LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.backends.ray_local import init_local_ray, processes_of
from qaq_assets.lib.scoring.engine.models import ModelSpec
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SCORE_CACHE
from qaq_assets_tests.helpers import CODE_PAIRS, FUSED_FORWARD, TINY, rows_of

ray = pytest.importorskip("ray", reason="the ray backend needs Ray: pip install 'qaq-assets[ray]'")

pytestmark = pytest.mark.slow  # a Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        init_local_ray(num_cpus=2)
    except Exception as error:  # noqa: BLE001 - any failure to start means this machine cannot run Ray
        pytest.skip(f"Ray cannot start on this machine: {error}")
    yield ray.cluster_resources()
    ray.shutdown()


def test_ray_replicas_score_exactly_like_the_local_backend(ray_cluster, tmp_path, make_shard, tiny_model):
    from qaq_assets.lib.scoring.backends.ray import RayBackend

    assert ray_cluster["CPU"] == 2
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    layouts = build_layouts("auto", tiny_model.tokenizer)
    local_lake = Lake(tmp_path / "local")
    local = score_shard(
        local_lake,
        samples,
        "s",
        LocalBackend(
            tiny_model, PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id), ScorerOptions()
        ),
        commit_every=3,
    )

    backend = RayBackend(ModelSpec.parse(TINY), device="cpu", dtype="float32", replicas=2)
    try:
        assert len(backend.actors) == 2
        assert backend.identity.fingerprint == tiny_model.fingerprint
        assert backend.describe_forward().startswith(FUSED_FORWARD)
        ray_lake = Lake(tmp_path / "ray")
        remote = score_shard(ray_lake, samples, "s", backend, commit_every=3)
    finally:
        backend.close()
    assert remote.samples_scored == len(CODE_PAIRS) and remote.forward_calls > 0
    # One node here: every sample is attributed to it.
    assert list(remote.samples_by_replica.values()) == [len(CODE_PAIRS)]
    assert next(iter(remote.samples_by_replica)).startswith("ray node ")
    assert rows_of(ray_lake, remote).equals(rows_of(local_lake, local))  # row by row, every log-prob
    # Same cache schema and chunked commits: 12 samples in chunks of 3.
    history = ray_lake.delta_table(SCORE_CACHE).history()
    assert sum(1 for h in history if h["operationParameters"].get("mode") == "Append") == 4


def test_the_graph_scores_on_ray_when_configured(ray_cluster, lake, make_shard):
    import dagster as dg

    from qaq_assets.definitions import build_assets, build_resources
    from qaq_assets.defs.partitions import SHARDS
    from qaq_assets.lib.settings import Settings
    from qaq_assets.lib.store.tables import QAQ_SCORES
    from qaq_assets_tests.helpers import register_files

    settings = Settings(lake=lake.root, models=(TINY,), dtype="float32", backend="ray", ray_replicas=2)
    resources, assets = build_resources(settings), build_assets(settings)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, register_files(lake, [make_shard("s", CODE_PAIRS)]))
    assert dg.materialize([assets[0]], partition_key="s", instance=instance, resources=resources).success
    key = dg.MultiPartitionKey({"shard": "s", "model": "tiny"})
    result = dg.materialize(assets[1:3], partition_key=key, instance=instance, resources=resources)
    assert result.success
    assert result.asset_materializations_for_node("token_logprobs")[0].metadata["backend"].value == "ray"
    assert lake.scan(QAQ_SCORES).select(pl.len()).collect().item() == len(CODE_PAIRS)


# Loopback as /proc/net writes it: 127.0.0.1, ::1 and ::ffff:127.0.0.1.
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
DRIVER = """
import sys, time, ray
from qaq_assets.lib.scoring.backends.ray_local import init_local_ray
print(init_local_ray(num_cpus=1), flush=True)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
print("ready", flush=True)
time.sleep(600)
"""


def _listening_sockets() -> dict[str, str]:
    """Socket inode -> local address, for every listening TCP socket (from /proc/net)."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/net/{table}").read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[fields[9]] = fields[1]
    return found


def _sockets_of(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def test_a_local_ray_instance_listens_on_loopback_only_and_dies_with_its_driver():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        directory = driver.stdout.readline().strip()
        assert driver.stdout.readline().strip() == "ready"
        processes = processes_of(directory)
        listening = _listening_sockets()
        addresses = {
            listening[inode] for pid in [driver.pid, *processes] for inode in _sockets_of(pid) if inode in listening
        }
        assert len(processes) >= 3 and addresses  # gcs, raylet, agents, a worker
        hosts = {address.split(":")[0] for address in addresses}
        assert hosts <= LOOPBACK, addresses
    finally:
        driver.kill()  # SIGKILL: nothing of the driver's own runs after this
        driver.wait()
    deadline = time.monotonic() + 20
    while processes_of(directory) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(directory) == []
