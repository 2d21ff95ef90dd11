"""Scoring on a Ray cluster: a pool of actors, each holding one model replica.

Each chunk goes to a free replica (``ray.util.ActorPool``) and the results come back in
order, so the driver commits exactly what the local backend would. A replica scores a
chunk with the same scorer and batching as the local backend: the scores are identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from qaq_assets.lib.scoring.backends.local import Chunk, ScoredChunk, ScorerOptions, ScoringReplica
from qaq_assets.lib.scoring.backends.ray_local import init_local_ray
from qaq_assets.lib.scoring.engine.models import ModelSpec


class RayBackend:
    """Score chunks on ``replicas`` Ray actors (default: one per GPU, else one per cluster)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str = "auto",
        dtype: str = "auto",
        options: ScorerOptions = ScorerOptions(),
        address: str | None = None,
        replicas: int = 0,
    ):
        try:
            import ray
            from ray.util import ActorPool
        except ImportError as error:
            raise RuntimeError(
                "the ray backend needs Ray: pip install 'qaq-assets[ray]' (or pip install ray)"
            ) from error
        if not ray.is_initialized():
            if address:  # "auto" (a cluster this machine belongs to) or ray://host:10001
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                init_local_ray()
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        replicas = replicas or max(1, gpus)
        threads = max(1, cpus // replicas)
        placement = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": threads}
        replica = ray.remote(ScoringReplica).options(**placement)
        self._ray = ray
        self.actors = [replica.remote(spec, device, dtype, options, threads) for _ in range(replicas)]
        identities = set(ray.get([actor.replica_identity.remote() for actor in self.actors]))
        if len(identities) != 1:
            raise RuntimeError(f"replicas disagree on the model they loaded: {identities}")
        self.identity = identities.pop()
        node_ids = ray.get([actor.node_id.remote() for actor in self.actors])
        self.nodes = {actor: f"ray node {node[:8]}" for actor, node in zip(self.actors, node_ids, strict=True)}
        self.on_gpu = gpus > 0
        self.pool = ActorPool(self.actors)

    def score_chunks(self, chunks: Iterable[Chunk], on_pass=None) -> Iterator[ScoredChunk]:
        # Replicas run remotely: progress comes per chunk, from the driver's commits. Each
        # chunk is labelled with the node that scored it.
        yield from self.pool.map(lambda actor, chunk: actor.score.remote(chunk, self.nodes[actor]), chunks)

    def describe_forward(self) -> str:
        return self._ray.get(self.actors[0].describe_forward.remote())

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
