"""Where a model runs and the defaults that follow from it (device, windows per call, precision)."""
from __future__ import annotations

import torch

from landsentry.models.vocabulary.errors import InputError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; an explicit device that is not available is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available to this torch build")
    return torch.device(device)


def default_batch_size(device: torch.device) -> int:
    """Windows per model call: 1 on the CPU (larger batches only add memory traffic there), 8 on CUDA."""
    return 8 if device.type == "cuda" else 1


def default_precision(device: torch.device) -> str:
    """float32 on the CPU; on CUDA, bfloat16 where the GPU has it (same range as float32), else float16."""
    if device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
