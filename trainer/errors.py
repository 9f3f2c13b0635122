"""The one exception type the trainer raises for problems a user can fix (bad flags, data, model, resume dir)."""

from __future__ import annotations


class TrainerError(RuntimeError):
    """A problem with the run's inputs; the message says what is wrong and what to do about it."""
