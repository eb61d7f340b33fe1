"""Import torchvision on a CPU-only torch, in one place.

PyPI's torchvision 0.28.0 wheel is a CUDA build; its C extension (`torchvision._C`) does not load
against the CPU build of torch 2.13.0 that these machines install. torchvision then fails at import
because `torchvision/_meta_registrations.py` registers fake kernels for `torchvision::nms` and
`torchvision::qnms`, operators that only the missing extension would have defined.

When (and only when) the extension is missing, this module defines those two operator schemas (no
kernels), so that `import torchvision` succeeds and everything built on plain PyTorch ops works:
models, transforms.v2, datasets. The compiled ops (nms, roi_align, deform_conv2d) stay unavailable
and raise torchvision's own error; landsentry does not use them. With a matching torchvision
install (for example on a CUDA machine) this module does nothing.

Every module in this project imports torchvision through `from models.torchvision_compat import
torchvision`, never directly.
"""
from __future__ import annotations

import importlib.util
import sys

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def _extension_loads() -> bool:
    """Whether torchvision's compiled extension loads against this torch (without importing torchvision)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import glob
    import os

    for location in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(location, "_C*.so")) + glob.glob(os.path.join(location, "_C*.pyd")):
            try:
                torch.ops.load_library(path)
                return True
            except (OSError, RuntimeError):
                return False
    return False


def _define_missing_ops() -> None:
    global _library
    if _library is not None:
        return
    _library = torch.library.Library("torchvision", "DEF")
    for name, schema in _SCHEMAS.items():
        _library.define(schema)


def _import_torchvision():
    if "torchvision" not in sys.modules and not _extension_loads():
        _define_missing_ops()
    import torchvision as _tv

    return _tv


torchvision = _import_torchvision()
EXTENSION_MISSING = _library is not None
"""True when the compiled extension could not load and the fallback ops are in use."""
