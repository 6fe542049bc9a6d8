"""The one rule for a ``--device`` option: ``auto`` (or None), ``cpu``, ``cuda`` or ``cuda:N``.

``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available (each torchrun rank its own GPU), else the CPU.
"""

from __future__ import annotations

import os

from ..errors import RelinkError


def resolve_device(device: str | None = "auto", flag: str = "--device") -> str:
    """The device to run on, as a torch device string."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise RelinkError(f"{flag} {device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RelinkError(f"{flag} {device}: no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RelinkError(f"{flag} {device}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise RelinkError(f"{flag} {device}: relink runs on cpu or cuda")
    return str(device)
