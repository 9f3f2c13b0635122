"""Finetuning (and from-scratch training) of causal LMs on the poem corpus: `python -m trainer`.

The public API is imported lazily so that `import trainer.scratch` stays as light as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["TrainConfig", "TrainResult", "TrainerError", "train", "train_async"]

if TYPE_CHECKING:
    from trainer.api import train_async
    from trainer.config import TrainConfig
    from trainer.errors import TrainerError
    from trainer.loop import TrainResult, train


def __getattr__(name: str):
    if name == "train_async":
        from trainer.api import train_async

        return train_async
    if name == "TrainConfig":
        from trainer.config import TrainConfig

        return TrainConfig
    if name == "TrainerError":
        from trainer.errors import TrainerError

        return TrainerError
    if name in ("train", "TrainResult"):
        from trainer import loop

        return getattr(loop, name)
    raise AttributeError(name)
