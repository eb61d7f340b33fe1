"""Class-balanced cross-entropy plus soft Dice, on full and partial labels alike.

A full label says which class a pixel is; a partial label (`NOT_CLASS_OFFSET + k`, from road-only or
building-only sources) says only "not class k". The loss uses exactly what a label says: the
cross-entropy term is -log p(class) on full labels and -log(1 - p_k) on "not k" labels, and Dice for
class k is computed over the pixels whose k-ness is known (full labels and "not k" labels). Without
partial labels both terms are the usual weighted cross-entropy and soft Dice.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from landsentry.models.vocabulary.classes import NOT_CLASS_OFFSET


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


def split_labels(target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(full, negated, k): masks of full labels and of "not k" labels, and the class each refers to (0 elsewhere)."""
    full = target < num_classes
    negated = (target >= NOT_CLASS_OFFSET) & (target < NOT_CLASS_OFFSET + num_classes)
    k = torch.where(full, target, torch.where(negated, target - NOT_CLASS_OFFSET, torch.zeros_like(target)))
    return full, negated, k


class CEDiceLoss(nn.Module):
    """Weighted cross-entropy (full and "not k" labels) + (1 - mean soft Dice over classes present in the batch)."""

    def __init__(self, class_weights: torch.Tensor | None = None, dice_weight: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        num_classes = logits.shape[1]
        full, negated, k = split_labels(target, num_classes)
        log_p = logits.log_softmax(dim=1)
        log_pk = log_p.gather(1, k.unsqueeze(1)).squeeze(1)
        # -log p(k) where k is the class; -log(1 - p(k)) where k is ruled out (log1p(-exp) is stable near 0)
        nll = torch.where(full, -log_pk, -torch.log1p(-log_pk.exp().clamp(max=1 - 1e-6)))
        weight = self.class_weights[k] if self.class_weights.numel() else torch.ones_like(nll)
        weight = weight * (full | negated)
        ce = (weight * nll).sum() / weight.sum().clamp(min=1e-12)
        if self.dice_weight <= 0:
            return ce
        return ce + self.dice_weight * soft_dice_loss(log_p.exp(), target, full, negated, k)


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, full: torch.Tensor | None = None,
                   negated: torch.Tensor | None = None, k: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean soft Dice over the classes present, each over the pixels where that class is known."""
    num_classes = probs.shape[1]
    if full is None or negated is None or k is None:
        full, negated, k = split_labels(target, num_classes)
    onehot = F.one_hot(k, num_classes).permute(0, 3, 1, 2).float()
    known = full.unsqueeze(1) | (negated.unsqueeze(1) & onehot.bool())  # N x K x H x W: is this class's answer known here?
    truth = onehot * full.unsqueeze(1)
    p = probs * known
    dims = (0, 2, 3)
    inter = (p * truth).sum(dims)
    union = p.sum(dims) + truth.sum(dims)
    present = truth.sum(dims) > 0
    dice = (2 * inter + 1) / (union + 1)
    return 1 - dice[present].mean() if present.any() else probs.sum() * 0


__all__ = ["CEDiceLoss", "balanced_class_weights", "soft_dice_loss", "split_labels"]
