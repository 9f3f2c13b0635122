"""Before anything slow starts: can MODEL's weights be had at all (local directory, hub cache, or the hub)?

Without this check an offline start spends about a minute (embedding model, then the hub client's
retries with backoff) before the loader gives up. The check is cheap: a directory test, a look in the
cache, and, only when both miss, one short request to the hub.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from server.errors import StartupError

REACH_TIMEOUT_S = 3.0


class ModelUnavailable(StartupError):
    """MODEL is a hub id that is not cached here, and the hub cannot be reached to download it."""


def is_local_model(model: str) -> bool:
    # Here rather than in server.llm.tokens, which imports transformers: the start-up check runs first.
    return Path(model).expanduser().is_dir()


def is_cached(model: str, cache_dir: str | Path | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        # Every transformers checkpoint has a config.json; its presence means a download completed once.
        found = try_to_load_from_cache(model, "config.json", cache_dir=cache_dir)
    except ValueError:  # not a valid hub id (e.g. a directory path that does not exist): nothing cached
        return False
    return isinstance(found, str)


def unreachable_reason(endpoint: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached, or None when it answers at all (any HTTP status will do)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:  # refused, no route, DNS failure, timeout
        return str(getattr(exc, "reason", exc))


def unavailable_message(model: str, endpoint: str, cache: str, reason: str) -> str:
    return (
        f"Cannot start: MODEL={model!r} is not in the Hugging Face cache ({cache}) and the hub at {endpoint} "
        f"cannot be reached ({reason}). Either download it on a machine with network access, "
        f"`hf download {model} --local-dir models/download`, copy that directory here and set MODEL to it, "
        "or point MODEL at a local model directory trained from scratch on the poems, no download "
        "needed: `.venv/bin/python -m trainer --from-scratch tiny --data ../shared/corpus/poems.html "
        "--out models/poet`, then `MODEL=models/poet scripts/serve.sh` (see README.md, Quick start)."
    )


def ensure_model_available(model: str, *, endpoint: str | None = None, cache_dir: str | Path | None = None,
                           offline: bool | None = None, timeout: float = REACH_TIMEOUT_S) -> None:
    """Return when MODEL can be loaded or downloaded; raise ModelUnavailable, with the ways out, when not.

    `endpoint`, `cache_dir` and `offline` default to the hub client's own settings (HF_ENDPOINT,
    HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE), so the check looks exactly where the loader will.
    """
    if is_local_model(model) or is_cached(model, cache_dir):
        return
    from huggingface_hub import constants

    endpoint = endpoint or constants.ENDPOINT
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    reason = "HF_HUB_OFFLINE is set" if offline else unreachable_reason(endpoint, timeout)
    if reason is not None:
        cache = str(cache_dir or constants.HF_HUB_CACHE)
        raise ModelUnavailable(unavailable_message(model, endpoint, cache, reason))
