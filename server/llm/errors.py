"""Why a generation backend could not load its model: shared by every backend that loads weights in-process."""

from __future__ import annotations

from server.errors import StartupError


class ModelLoadError(StartupError):
    pass


def load_hint(model: str) -> str:
    return (f"Could not load MODEL={model!r}. If this machine is offline or the model is not in the Hugging "
            "Face cache, point MODEL at a local model directory (a Hugging Face checkpoint, or one made with "
            "`python -m trainer --from-scratch tiny --data ../shared/corpus/poems.html --out models/poet`), "
            f"or pre-download it with `hf download {model}` on a connected machine.")
