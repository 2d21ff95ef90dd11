"""A Ray worker node of the deployment's cluster dies while a run scores: the chunk sent to it is
scored again on the other node, nothing is lost or committed twice, and the scores are the local
backend's."""

import os
import secrets
import sys

import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.processes import kill_processes_with
from qaq_assets.lib.scoring.backends.local import LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.engine.models import ModelSpec
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets_tests.helpers import CODE_PAIRS, REPO, TINY, rows_of

ray = pytest.importorskip("ray", reason="the ray backend needs Ray: pip install 'qaq-assets[ray]'")

pytestmark = pytest.mark.slow  # a three-node Ray cluster

sys.path.insert(0, str(REPO / "deploy" / "local"))
import deployment  # noqa: E402  (deploy/local/deployment.py: the cluster as the deployment starts it)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """The deployment's Ray cluster (a head without CPUs, two worker nodes), and the driver's
    credentials for it."""
    token = secrets.token_hex(16)
    environment = {**os.environ, deployment.MARKER: str(tmp_path), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    state: dict = {}
    try:
        deployment.start_ray(state, environment)
    except Exception as error:  # noqa: BLE001 - any failure to start means this machine cannot run Ray
        pytest.skip(f"Ray cannot start on this machine: {error}")
    # Ray reads its authentication settings once per process: read them again, now and after.
    from ray._private.authentication_test_utils import reset_auth_token_state

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    reset_auth_token_state()
    try:
        yield state["ray"]["address"]
    finally:
        ray.shutdown()
        kill_processes_with(deployment.MARKER, str(tmp_path))
        monkeypatch.undo()
        reset_auth_token_state()


class KillsANodeWhenScoringStarts:
    """The backend, with worker node 2 killed as the run starts scoring, after both replicas
    loaded their model: its replica's first chunk meets a dead node. (Killed after the first chunk
    instead, the tiny model can finish every chunk before the node is gone: no fault to see.)"""

    def __init__(self, backend):
        self.backend, self.killed = backend, []

    def score_chunks(self, chunks, on_pass=None):
        self.killed = deployment.kill_ray_node("worker2")
        yield from self.backend.score_chunks(chunks, on_pass)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_a_worker_node_killed_while_it_scores_loses_nothing(cluster, tmp_path, make_shard, tiny_model):
    from qaq_assets.lib.scoring.backends.ray import RayBackend

    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    layouts = build_layouts("auto", tiny_model.tokenizer)
    scorer = PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id)
    local_lake, ray_lake = Lake(tmp_path / "local"), Lake(tmp_path / "ray")
    local = score_shard(local_lake, samples, "s", LocalBackend(tiny_model, scorer, ScorerOptions()))

    backend = RayBackend(ModelSpec.parse(TINY), device="cpu", dtype="float32", address=cluster, replicas=2)
    nodes = {node["NodeID"][:8]: node for node in ray.nodes()}
    on_node_2 = [label for label in backend.nodes.values() if "worker2" in nodes[label.split()[-1]]["Resources"]]
    assert len(on_node_2) == 1 and len(set(backend.nodes.values())) == 2  # one replica per worker node
    [on_node_1] = set(backend.nodes.values()) - set(on_node_2)
    faulty = KillsANodeWhenScoringStarts(backend)
    try:
        remote = score_shard(ray_lake, samples, "s", faulty, commit_every=2)
    finally:
        backend.close()
    assert faulty.killed, "worker node 2 had no process to kill"
    assert backend.lost == on_node_2
    assert remote.samples_scored == len(CODE_PAIRS)
    # Every sample once, every log-prob the local one.
    assert rows_of(ray_lake, remote).equals(rows_of(local_lake, local))
    # Node 1 scored every chunk, node 2's first one again included.
    assert remote.samples_by_replica == {on_node_1: len(CODE_PAIRS)}


def test_scoring_fails_in_one_line_when_every_node_is_gone(cluster, tmp_path, make_shard):
    from qaq_assets.lib.scoring.backends.ray import RayBackend

    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    backend = RayBackend(ModelSpec.parse(TINY), device="cpu", dtype="float32", address=cluster, replicas=2)
    deployment.kill_ray_node("worker1")
    deployment.kill_ray_node("worker2")
    lake = Lake(tmp_path / "ray")
    try:
        with pytest.raises(RuntimeError, match=r"^every Ray replica is gone \(the last, on ray node \w+: .*\)"):
            score_shard(lake, samples, "s", backend, commit_every=2)
    finally:
        backend.close()
    assert backend.lost and not backend.actors
