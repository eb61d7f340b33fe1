"""User-facing errors: the CLI prints their message and exits non-zero, the API turns them into 4xx."""
from __future__ import annotations


class LandsentryError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    exit_code = 2
    http_status = 422


class InputError(LandsentryError):
    """A file or argument the user gave cannot be used (missing, corrupt, wrong bands, mismatched)."""


class TooLargeError(InputError):
    """An image beyond the configured pixel limit (decompression-bomb guard)."""

    http_status = 413


class UnsupportedMediaError(InputError):
    """A file that is not an image format landsentry reads."""

    http_status = 415


class CheckpointError(LandsentryError):
    """A checkpoint file that is not a (compatible) landsentry checkpoint."""
