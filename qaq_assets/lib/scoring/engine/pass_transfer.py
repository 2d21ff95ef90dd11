"""Host <-> device copies of a pass that never make the host wait on the device.

On CUDA a pass's arrays go up from pinned (page-locked) memory with non-blocking copies,
and its log-probs come back the same way into a pinned buffer with an event recorded
behind them: the host goes on to lay out and launch the next pass, and reads this one's
results only when it has nothing else to do (:meth:`PendingLogprobs.wait`). Elsewhere the
same calls are plain copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qaq_assets.lib.scoring.engine.host_to_device import pins, to_device
from qaq_assets.lib.scoring.engine.packed_attention import PackedAttention, PackedStream
from qaq_assets.lib.scoring.engine.passes import HostPass


@dataclass
class DevicePass:
    """A :class:`HostPass` on the device."""

    host: HostPass
    input_ids: torch.Tensor
    positions: torch.Tensor
    predictor_rows: torch.Tensor
    target_ids: torch.Tensor
    stream: PackedStream | None  # packed passes

    @property
    def rows(self) -> int:
        return self.host.rows

    @property
    def shapes(self) -> list[tuple[int, int]] | None:
        return self.host.shapes


def send(host: HostPass, device: torch.device, packed: PackedAttention | None = None) -> DevicePass:
    """Queue ``host``'s copies to ``device``; a packed pass's stream in the form ``packed`` takes."""
    stream = None
    if host.starts is not None:
        stream = packed.stream(host.starts, host.real_tokens, host.longest, device)
    return DevicePass(
        host,
        *(to_device(array, device) for array in (host.input_ids, host.positions, host.predictor_rows, host.target_ids)),
        stream,
    )


class PendingLogprobs:
    """A pass's log-probs on their way back to the host."""

    def __init__(self, host: HostPass, logprobs: torch.Tensor):
        self.host = host
        self._event = None
        if pins(logprobs.device):
            self._buffer = torch.empty(logprobs.shape, dtype=torch.float32, pin_memory=True)
            self._buffer.copy_(logprobs, non_blocking=True)
            self._event = torch.cuda.Event()
            # The copy's stream: that of the device the log-probs are on, whichever is current.
            self._event.record(torch.cuda.current_stream(logprobs.device))
        else:
            self._buffer = logprobs.float()

    def wait(self) -> list[tuple[np.ndarray, ...]]:
        """The pass's (first, second, end) log-probs per sequence, once the device has them."""
        if self._event is not None:
            self._event.synchronize()
        return self.host.split(self._buffer.numpy())
