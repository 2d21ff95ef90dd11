"""Scoring on a Ray cluster: a pool of actors, each holding one model replica.

Each chunk goes to a free replica and the results come back in order, so the driver commits
exactly what the local backend would. A replica scores a chunk with the same scorer and
batching as the local backend: the scores are identical. A replica whose node dies (or whose
process is killed) is dropped and its chunk is scored again on another; only when none is left
does scoring fail, and the chunks committed before stay committed.
"""

from __future__ import annotations

import logging
from collections import deque
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
        self.lost: list[str] = []  # the replicas that died while scoring, by node

    def score_chunks(self, chunks: Iterable[Chunk], on_pass=None) -> Iterator[ScoredChunk]:
        """Each chunk scored on a free replica (labelled with its node), yielded in order. Replicas
        run remotely: progress comes per chunk, from the driver's commits."""
        from ray.exceptions import RayActorError

        pending = iter(chunks)
        again: deque[tuple[int, Chunk]] = deque()  # chunks of a replica that died
        running: dict = {}  # object ref -> (chunk index, chunk, actor)
        done: dict[int, ScoredChunk] = {}
        free, submitted, yielded, exhausted = list(self.actors), 0, 0, False
        while True:
            while free and (again or not exhausted):
                if again:
                    index, chunk = again.popleft()
                else:
                    chunk = next(pending, None)
                    if chunk is None:
                        exhausted = True
                        break
                    index, submitted = submitted, submitted + 1
                actor = free.pop()
                running[actor.score.remote(chunk, self.nodes[actor])] = (index, chunk, actor)
            while yielded in done:
                yield done.pop(yielded)
                yielded += 1
            if not running:
                return
            [ready], _ = self._ray.wait(list(running), num_returns=1)
            index, chunk, actor = running.pop(ready)
            try:
                done[index] = self._ray.get(ready)
                free.append(actor)
            except RayActorError as error:
                self._lose(actor, error)
                again.append((index, chunk))

    def _lose(self, actor, error: Exception) -> None:
        node = self.nodes.pop(actor)
        self.actors.remove(actor)
        self.lost.append(node)
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not self.actors:
            raise RuntimeError(f"every Ray replica is gone (the last, on {node}: {cause}); committed chunks are kept")
        logging.getLogger(__name__).warning(
            "Ray replica on %s is gone (%s): its chunk is scored again on %d other replica(s)",
            node,
            cause,
            len(self.actors),
        )

    def describe_forward(self) -> str:
        return self._ray.get(self.actors[0].describe_forward.remote())

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
