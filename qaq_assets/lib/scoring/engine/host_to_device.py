"""Host arrays onto the device without making the host wait: through pinned (page-locked)
memory with non-blocking copies on CUDA, plain copies elsewhere."""

from __future__ import annotations

import numpy as np
import torch


def pins(device: torch.device) -> bool:
    """Whether copies to and from ``device`` go through pinned memory (CUDA only)."""
    return device.type == "cuda"


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device``; asynchronous from pinned memory on CUDA."""
    tensor = torch.from_numpy(array)
    if not pins(device):
        return tensor.to(device)
    # The caching host allocator keeps the pinned block alive until the copy has run.
    return tensor.pin_memory().to(device, non_blocking=True)
