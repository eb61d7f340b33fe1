"""`landsentry bench`'s measuring parts: stage clock, generated scenes, the baseline and model-only checks, the whole-path run."""
