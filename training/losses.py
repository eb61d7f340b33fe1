"""Class-balanced cross-entropy plus soft Dice: thin roads and rare classes still pull on the weights."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from landsentry.models.vocabulary.classes import IGNORE_INDEX


def balanced_class_weights(pixel_counts: torch.Tensor, power: float = 0.5, max_ratio: float = 10.0) -> torch.Tensor:
    """Weights ∝ frequency^-power, normalised to mean 1 over seen classes; unseen classes get 0.

    power 0.5 (inverse square root) lifts rare classes without letting a handful of pixels dominate.
    """
    counts = pixel_counts.double()
    seen = counts > 0
    weights = torch.zeros_like(counts)
    freq = counts[seen] / counts[seen].sum()
    w = freq.pow(-power)
    w = w.clamp(max=w.min() * max_ratio)
    weights[seen] = w / w.mean()
    return weights.float()


class CEDiceLoss(nn.Module):
    """Weighted cross-entropy + (1 - mean soft Dice over classes present in the batch)."""

    def __init__(self, class_weights: torch.Tensor | None = None, dice_weight: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights if self.class_weights.numel() else None
        ce = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE_INDEX)
        if self.dice_weight <= 0:
            return ce
        return ce + self.dice_weight * soft_dice_loss(logits, target)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    union = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1) / (union + 1)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0
