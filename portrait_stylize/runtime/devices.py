"""Where styles run: the default device, and checking a device a user named."""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError


def _is_available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return True


def default_device() -> torch.device:
    """CUDA when available, else Apple MPS, else CPU."""
    return torch.device(next((kind for kind in ("cuda", "mps") if _is_available(kind)), "cpu"))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Parse ``device`` (``None`` = :func:`default_device`) and check that it exists here."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"invalid device {device!r} ({exc}); use cpu, cuda, cuda:N or mps") from None
    if not _is_available(resolved.type):
        raise InvalidArgumentError(f"device {device!r} is not available on this machine; use cpu")
    return resolved
