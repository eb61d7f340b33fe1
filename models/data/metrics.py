"""Confusion-matrix metrics for segmentation and binary change maps; summable across DDP ranks."""
from __future__ import annotations

import numpy as np
import torch

from landsentry.models.vocabulary.classes import CLASS_NAMES, IGNORE_INDEX, NOT_CLASS_OFFSET


class ConfusionMatrix:
    """Rows are the truth, columns the prediction; pixels labelled IGNORE_INDEX are skipped.

    Partial labels ("not class k", `NOT_CLASS_OFFSET + k`) are counted apart, in `ruled_out`:
    (pixels that are not k, of them predicted k). A pixel predicted k where the label rules k out is a
    false positive of k, so a road-only source's road IoU is exact; its other classes stay unscored.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.ruled_out = torch.zeros(num_classes, 2, dtype=torch.int64)

    def update(self, target: torch.Tensor | np.ndarray, pred: torch.Tensor | np.ndarray) -> None:
        target = torch.as_tensor(target).reshape(-1).long().cpu()
        pred = torch.as_tensor(pred).reshape(-1).long().cpu()
        keep = (target != IGNORE_INDEX) & (target >= 0) & (target < self.num_classes) & (pred >= 0) & (pred < self.num_classes)
        idx = target[keep] * self.num_classes + pred[keep]
        self.matrix += torch.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        k = target - NOT_CLASS_OFFSET
        negated = (k >= 0) & (k < self.num_classes)
        if negated.any():
            k, hit = k[negated], pred[negated] == k[negated]
            self.ruled_out[:, 0] += torch.bincount(k, minlength=self.num_classes)
            self.ruled_out[:, 1] += torch.bincount(k[hit], minlength=self.num_classes)

    def all_reduce(self) -> None:
        """Sum over DDP ranks (no-op without an initialised process group)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for name in ("matrix", "ruled_out"):
                total = getattr(self, name).clone()
                torch.distributed.all_reduce(total)
                setattr(self, name, total)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both truth and prediction."""
        m = self.matrix.double().numpy()
        tp = np.diag(m)
        denom = m.sum(0) + m.sum(1) - tp + self.ruled_out[:, 1].double().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes present in the truth (classes never seen cannot be scored)."""
        present = self.matrix.sum(1).numpy() > 0
        iou = self.iou()
        return float(np.nanmean(iou[present])) if present.any() else float("nan")

    def pixel_accuracy(self) -> float:
        m = self.matrix.double()
        return float(m.diag().sum() / m.sum().clamp(min=1))

    def report(self, names: tuple[str, ...] = CLASS_NAMES) -> str:
        """A per-class IoU table, mIoU, and the confusion matrix in percent of each true class."""
        iou = self.iou()
        truth = self.matrix.sum(1).numpy()
        lines = [f"{'class':<12} {'IoU':>6} {'pixels':>12}"]
        for i, name in enumerate(names[: self.num_classes]):
            value = "   -  " if np.isnan(iou[i]) else f"{iou[i]:6.3f}"
            lines.append(f"{name:<12} {value} {int(truth[i]):>12,}")
        lines.append(f"{'mIoU':<12} {self.miou():6.3f}   pixel accuracy {self.pixel_accuracy():.3f}")
        lines.append("confusion (rows truth, cols prediction, % of row):")
        short = [n[:6] for n in names[: self.num_classes]]
        lines.append(" " * 8 + "".join(f"{s:>8}" for s in short))
        m = self.matrix.double().numpy()
        for i, s in enumerate(short):
            row = m[i] / max(m[i].sum(), 1) * 100
            lines.append(f"{s:>8}" + "".join(f"{v:8.1f}" for v in row))
        return "\n".join(lines)

    def as_dict(self, names: tuple[str, ...] = CLASS_NAMES) -> dict:
        """Scores as plain data; a class absent from the truth has IoU None (it cannot be scored: a road-only
        source says nothing about buildings, and a desert scene without background has no background IoU)."""
        iou = self.iou()
        present = self.matrix.sum(1).numpy() > 0
        return {
            "miou": round(self.miou(), 4),
            "pixel_accuracy": round(self.pixel_accuracy(), 4),
            "iou": {n: (round(float(iou[i]), 4) if present[i] and not np.isnan(iou[i]) else None) for i, n in enumerate(names[: self.num_classes])},
        }


def binary_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU of the positive class (change) from pixel counts."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}
