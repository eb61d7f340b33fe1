"""Per-class scores of a segmentation predictor on whole labelled images, tiled exactly as inference tiles them."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from landsentry.models.data.metrics import ConfusionMatrix
from landsentry.models.inference.runner import Predictor

LabelledImage = tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]
"""(uint8 C x H x W image, H x W schema ids with IGNORE_INDEX), as numpy arrays or CPU tensors."""


def score(predictor: Predictor, images: Sequence[LabelledImage], rank: int = 0, world: int = 1) -> ConfusionMatrix:
    """Confusion matrix of a predictor's classes on whole (image, mask) pairs, summed across ranks.

    Each DDP rank scores every `world`-th image from `rank`; the matrices are summed with all_reduce.
    """
    matrix = ConfusionMatrix(predictor.checkpoint.num_classes)
    for image, mask in images[rank::world]:
        probs = predictor.predict_array(np.asarray(image, dtype=np.float32))
        matrix.update(mask, probs.argmax(0))
    matrix.all_reduce()
    return matrix
