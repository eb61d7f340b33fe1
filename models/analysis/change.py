"""Class-aware change between two dates: which pixels became building, road or earthwork.

The comparison works on the segmentation model's class probabilities of both dates, not on pixel
values, so a different season, sun angle or sensor does not read as change. For each kind K
(building, road, bare soil / earthwork) a pixel is *new K* when

- the after image's most likely class is K with probability >= `min_after_prob`, and
- the before image's probability of K, max-pooled over a (2r+1)² neighbourhood (r =
  `tolerance_px`), stays below `max_before_prob` and at least `min_gain` below the after
  probability: a building that was there before, a few pixels away because the dates are not
  perfectly registered, is not new;
- with a learned change model (`models.nn.change_net`, run by `models.inference.runner.ChangeRunner`), a class change the comparison is not sure
  of (`p_after(K) * (1 - p_before(K)) < confident_score`) needs a learned change probability of at
  least `change_threshold`: the model vetoes transitions it is nearly certain did not happen (a
  misclassified date), and leaves confident ones alone.

The masks are then cleaned with a morphological opening (drops specks and 1-2 px slivers along
edges) and closing (fills pinholes), both by max pooling in torch. The per-pixel confidence of a
new-K pixel is `p_after(K) * (1 - p_before(K))` (averaged with the learned change probability when
that is used). Minimum areas are applied later, on polygons (`models.analysis.regions`).

Everything is a function of a neighbourhood of at most `ChangeParams.halo` rows, so scenes are
processed in strips (`StripChange`) with exactly the same result as on the whole array.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import numpy as np
import torch
from torch.nn import functional as F

from landsentry.models.analysis.polygons import label_components
from landsentry.models.vocabulary.kinds import CHANGE_NODATA, KINDS, NO_CHANGE


@dataclass(frozen=True)
class ChangeParams:
    """How two dates' class probabilities become change masks (see the module docstring)."""

    tolerance_px: int = 3
    """Misregistration allowed between the dates, in pixels (the before probabilities are max-pooled over it)."""
    min_after_prob: float = 0.4
    """The new class must have at least this probability after."""
    max_before_prob: float = 0.3
    """... and the (max-pooled) before probability of that class must stay below this ..."""
    min_gain: float = 0.2
    """... and below the after probability by at least this much (so the same image twice is never change,
    whatever the thresholds)."""
    open_px: int = 1
    """Opening radius (pixels): removes specks and slivers narrower than 2*open_px+1."""
    close_px: int = 1
    """Closing radius (pixels): fills holes and gaps narrower than 2*close_px+1."""
    change_threshold: float = 0.05
    """Learned change probability an unsure class change needs (below it the change model vetoes it).
    Chosen with `confident_score` on held-out validation pairs (LEVIR-CD val, SZTAKI Archieve)."""
    confident_score: float = 0.6
    """Class comparison score (p_after * (1 - p_before)) at which the change model is not consulted."""
    learned_threshold: float = 0.5
    """Threshold of the learned model's own binary map (`learned_change_mask`, evaluation only)."""
    learned_alone: float | None = None
    """Learned change probability at or above which a pixel is new even where the class comparison sees
    no change; it takes the after image's most likely kind (building, road, earthwork) if that kind's
    after probability is at least `min_kind_prob`. None: the learned model only vetoes."""
    min_kind_prob: float = 0.2
    """After probability the kind of a learned-only change needs."""
    use_change_model: bool = True
    """Combine with the learned change model when one is given."""

    def __post_init__(self) -> None:
        if self.tolerance_px < 0 or self.open_px < 0 or self.close_px < 0:
            raise ValueError("tolerance_px, open_px and close_px must be >= 0")
        for name in ("min_after_prob", "max_before_prob", "min_gain", "change_threshold", "confident_score", "learned_threshold",
                     "learned_alone", "min_kind_prob"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    @property
    def halo(self) -> int:
        """Rows of context a strip needs on each side for an exact result."""
        return self.tolerance_px + 2 * self.open_px + 2 * self.close_px + 1

    def as_dict(self) -> dict:
        return asdict(self)


def _dilate(x: torch.Tensor, r: int) -> torch.Tensor:
    """Max over a (2r+1)² square, per channel; x is N x C x H x W (borders padded with -inf)."""
    return x if r <= 0 else F.max_pool2d(x, 2 * r + 1, stride=1, padding=r)


def _erode(x: torch.Tensor, r: int) -> torch.Tensor:
    return x if r <= 0 else -F.max_pool2d(-x, 2 * r + 1, stride=1, padding=r)


def clean_masks(masks: torch.Tensor, open_px: int, close_px: int) -> torch.Tensor:
    """Opening then closing of binary masks (N x C x H x W float 0/1), all channels at once."""
    masks = _dilate(_erode(masks, open_px), open_px)
    return _erode(_dilate(masks, close_px), close_px)


def change_map(
    before_probs: np.ndarray,
    after_probs: np.ndarray,
    valid: np.ndarray,
    params: ChangeParams = ChangeParams(),
    change_prob: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Change codes (uint8 H x W: 0, 1 new_building, 2 new_road, 3 new_earthwork, 255 invalid) and confidence (float32 0..1).

    `before_probs`, `after_probs`: K x H x W softmax probabilities of the two dates on one grid;
    `valid`: H x W bool, both dates have data; `change_prob`: H x W learned change probability or None.
    """
    codes = [k.change_code for k in KINDS]
    cls = [k.class_id for k in KINDS]
    with torch.no_grad():
        after = torch.from_numpy(np.ascontiguousarray(after_probs, np.float32))
        before = torch.from_numpy(np.ascontiguousarray(before_probs[cls], np.float32))
        ok = torch.from_numpy(np.ascontiguousarray(valid, bool))
        before = torch.where(ok, before, torch.zeros(()))  # nodata says nothing about what was there
        before_near = _dilate(before[None], params.tolerance_px)[0]
        after_top = after.argmax(dim=0)
        p_after = after[cls]
        score = p_after * (1 - before_near)
        raw = torch.stack([after_top == k for k in cls]) & (p_after >= params.min_after_prob) & (before_near < params.max_before_prob)
        raw &= p_after - before_near >= params.min_gain
        if change_prob is not None and params.use_change_model:
            learned = torch.from_numpy(np.ascontiguousarray(change_prob, np.float32))
            raw &= (learned >= params.change_threshold) | (score >= params.confident_score)
            if params.learned_alone is not None:
                top, best = p_after.max(dim=0)
                alone = (learned >= params.learned_alone) & (top >= params.min_kind_prob)
                raw |= (torch.arange(len(cls))[:, None, None] == best) & alone
            score = (score + learned) / 2
        raw &= ok
        masks = clean_masks(raw[None].float(), params.open_px, params.close_px)[0] > 0.5
        # closing may let two kinds claim a pixel: the first kind of the table wins (building, road, earthwork)
        out = torch.zeros(valid.shape, dtype=torch.uint8)
        conf = torch.zeros(valid.shape, dtype=torch.float32)
        for i in reversed(range(len(codes))):
            out[masks[i]] = codes[i]
            conf[masks[i]] = score[i][masks[i]]
        out[~ok] = CHANGE_NODATA
        conf[~ok] = 0
    return out.numpy(), conf.numpy()


def learned_change_mask(change_prob: np.ndarray, valid: np.ndarray, params: ChangeParams = ChangeParams()) -> np.ndarray:
    """The learned model's own binary change map (threshold + the same clean-up), for evaluation."""
    with torch.no_grad():
        raw = torch.from_numpy(np.ascontiguousarray(change_prob, np.float32)) >= params.learned_threshold
        raw &= torch.from_numpy(np.ascontiguousarray(valid, bool))
        return clean_masks(raw[None, None].float(), params.open_px, params.close_px)[0, 0].numpy() > 0.5


@dataclass
class ChangeStrip:
    """Finished rows [row0, row0 + h) of the change map."""

    row0: int
    codes: np.ndarray  # uint8 h x W
    confidence: np.ndarray  # float32 h x W


class StripChange:
    """Feeds strips of both dates' probabilities in, hands finished change rows out.

    A strip's result depends on `params.halo` rows around it, so rows are held back until enough
    rows below them have arrived (or the scene ends); memory is a few strips of the scene's width.
    """

    def __init__(self, params: ChangeParams = ChangeParams()) -> None:
        self.params = params
        self.halo = params.halo
        self._row0 = 0  # scene row of the buffer's first row
        self._done = 0  # next scene row to hand out
        self._buf: dict[str, np.ndarray] | None = None

    def push(self, row0: int, before_probs: np.ndarray, after_probs: np.ndarray, valid: np.ndarray,
             change_prob: np.ndarray | None = None, last: bool = False) -> list[ChangeStrip]:
        """Add rows [row0, row0 + h) (consecutive with the previous push); return the rows now final."""
        new = {"before": before_probs, "after": after_probs, "valid": valid}
        if change_prob is not None:
            new["change"] = change_prob
        if self._buf is None:
            if row0 != 0:
                raise ValueError("the first strip must start at row 0")
            self._buf = new
        else:
            end = self._row0 + self._buf["valid"].shape[0]
            if row0 != end:
                raise ValueError(f"strips must be consecutive: expected row {end}, got {row0}")
            self._buf = {k: np.concatenate([self._buf[k], v], axis=-2) for k, v in new.items()}
        end = self._row0 + self._buf["valid"].shape[0]
        final = end if last else end - self.halo
        if final <= self._done:
            return []
        # compute on [done - halo, end): every row in [done, final) sees its full neighbourhood
        lo = max(self._row0, self._done - self.halo) - self._row0
        part = {k: v[..., lo:, :] for k, v in self._buf.items()}
        codes, conf = change_map(part["before"], part["after"], part["valid"], self.params, part.get("change"))
        a, b = self._done - self._row0 - lo, final - self._row0 - lo
        strip = ChangeStrip(self._done, codes[a:b], conf[a:b])
        self._done = final
        keep = max(self._row0, final - self.halo) - self._row0  # rows needed as context for what follows
        self._buf = {k: v[..., keep:, :].copy() for k, v in self._buf.items()}
        self._row0 += keep
        return [strip]


def drop_small_regions(codes: np.ndarray, min_pixels: dict[int, float]) -> np.ndarray:
    """In-memory minimum area: 4-connected regions of each code smaller than `min_pixels[code]` become 0.

    The file path applies the same rule on polygons (`models.analysis.regions`); this one serves
    evaluation on small arrays.
    """
    out = codes.copy()
    for code, limit in min_pixels.items():
        mask = codes == code
        if not mask.any() or limit <= 1:
            continue
        labels, counts = label_components(mask)
        small = counts < limit
        small[0] = False
        out[small[labels]] = NO_CHANGE
    return out
