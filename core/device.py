"""Choose the compute device and the precision that training runs in."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("auto", "fp32", "bf16")


def select_device(request: str = "auto") -> torch.device:
    """Return the device for ``request``: auto picks CUDA, then Apple MPS, then CPU.

    An explicit request for a device that is not available raises ValueError.
    """
    request = request.lower()
    if request not in DEVICE_CHOICES and not request.startswith("cuda:"):
        raise ValueError(
            f"device {request!r} is not known; choose one of "
            f"{', '.join(DEVICE_CHOICES)}"
        )
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but PyTorch sees no CUDA GPU; "
            "use --device auto or --device cpu"
        )
    if request == "mps" and not _mps_available():
        raise ValueError(
            "device 'mps' was requested but Apple's Metal backend is not available; "
            "use --device auto or --device cpu"
        )
    return torch.device(request)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def cpu_has_amx() -> bool:
    """True when the CPU has AMX tiles, which make bf16 matrix work fast."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe())
    except RuntimeError:
        return False


def select_precision(request: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype for ``request`` on ``device``, or None for fp32.

    auto chooses bf16 on CUDA GPUs that support it and on CPUs with AMX. On a
    2-core Xeon with AMX, training measured about 2 times faster than in fp32
    (docs/benchmarks.md).
    """
    request = request.lower()
    if request not in PRECISION_CHOICES:
        raise ValueError(
            f"precision {request!r} is not known; choose one of "
            f"{', '.join(PRECISION_CHOICES)}"
        )
    if request == "fp32":
        return None
    if request == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_amx():
        return torch.bfloat16
    return None


def describe_device(device: torch.device, precision: torch.dtype | None) -> str:
    """Return a short human-readable description, for the status bar and logs."""
    dtype = "bf16" if precision == torch.bfloat16 else "fp32"
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        return f"CUDA {torch.cuda.get_device_name(index)} ({dtype})"
    if device.type == "mps":
        return f"Apple MPS ({dtype})"
    return f"CPU, {torch.get_num_threads()} threads ({dtype})"
