"""Keep the UI process and its page off the internet: a self-hosted chat must not phone home.

Must run before gradio (and huggingface_hub, which gradio imports) is imported: both read these at import.
The page itself loads only from this process: Gradio 6's default theme ships its fonts locally.
"""

from __future__ import annotations

import os

_LOCAL = ("127.0.0.1", "localhost", "::1")


def keep_offline() -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also gates Gradio's version check
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_SSR_MODE", "False")  # SSR would start a Node server we do not need
    os.environ.setdefault("GRADIO_MCP_SERVER", "False")
    # launch() checks the UI through its own URL: never send that through a configured proxy
    for name in ("NO_PROXY", "no_proxy"):
        present = [h for h in os.environ.get(name, "").split(",") if h.strip()]
        os.environ[name] = ",".join(present + [h for h in _LOCAL if h not in present])
