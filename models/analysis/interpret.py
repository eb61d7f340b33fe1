"""`interpret`: one entry point for one date or two, used by `landsentry predict`, the service and bench."""
from __future__ import annotations

from pathlib import Path

from landsentry.models.analysis import one_date, two_dates
from landsentry.models.analysis.change import ChangeParams
from landsentry.models.analysis.flags import FlagRules
from landsentry.models.analysis.inputs import Inputs, open_inputs
from landsentry.models.analysis.pipeline import Interpretation
from landsentry.models.inference.runner import ChangeRunner, Predictor, ProgressFn
from landsentry.models.inference.timing import NO_TIMER, Timer

__all__ = ["Inputs", "Interpretation", "interpret", "open_inputs"]


def interpret(inputs: Inputs, outdir: str | Path, predictor: Predictor, change_runner: ChangeRunner | None = None, *,
              rules: FlagRules = FlagRules(), params: ChangeParams = ChangeParams(), wgs84: bool = False,
              progress: ProgressFn | None = None, timer: Timer = NO_TIMER, previews_max_pixels: int = 0) -> Interpretation:
    """The one-date interpretation of `inputs`, or the two-date one when it holds a before image."""
    if inputs.before is None:
        return one_date.run(inputs, outdir, predictor, rules, wgs84, progress, timer, previews_max_pixels)
    return two_dates.run(inputs, outdir, predictor, change_runner, rules, params, wgs84, progress, timer, previews_max_pixels)
