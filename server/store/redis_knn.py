"""Server-side KNN: a VectorStore answered by the Redis query engine (Redis Stack, Redis 8: FT.SEARCH).

The documents written by the Redis TurnStore are hashes under `<prefix>d:`; one FT index over them
(a FLAT inner-product vector field, so results match FAISS's exact IndexFlatIP, and a TAG on the
namespace's sha1) makes them searchable where they are, without per-replica indexes. Redis indexes
a hash as it is written and drops it as it is deleted, so there is nothing to refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import numpy as np
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.exceptions import ResponseError

from server.logs import get_logger
from server.protocols import Document, Hit
from server.store.redis_link import RedisLink

log = get_logger(__name__)


async def query_engine_available(link: RedisLink) -> bool:
    """True when the server knows FT.SEARCH (the query engine module is loaded or built in)."""
    try:
        await link.run(lambda r: r.execute_command("FT._LIST"))
    except ResponseError:  # "unknown command": plain Redis without modules
        return False
    return True


class RedisKnnVectorStore:
    def __init__(self, link: RedisLink, prefix: str, dim: int, build_timeout: float = 60.0):
        self.link = link
        self.prefix = prefix
        self.dim = dim
        self.build_timeout = build_timeout
        # the dimension is in the name: a new embedding model gets a new index, the old one stays valid
        self.index = f"{prefix}knn:{dim}"

    async def start(self) -> None:
        fields = [TagField("nsh"), VectorField("emb", "FLAT", {"TYPE": "FLOAT32", "DIM": self.dim,
                                                               "DISTANCE_METRIC": "IP"})]
        definition = IndexDefinition(prefix=[f"{self.prefix}d:"], index_type=IndexType.HASH)
        try:
            await self.link.run(lambda r: r.ft(self.index).create_index(fields, definition=definition))
            log.info("redis knn index created", index=self.index)
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():  # another replica created it first
                raise
        await self._wait_indexed()

    async def _wait_indexed(self) -> None:
        """Documents written before the index existed are indexed in the background; wait for that."""
        deadline = time.monotonic() + self.build_timeout
        while time.monotonic() < deadline:
            info = await self.link.run(lambda r: r.ft(self.index).info())
            if float(info.get("indexing", 0) or 0) == 0:
                return
            await asyncio.sleep(0.2)
        log.warning("redis knn index still building; early searches may miss older memories", index=self.index)

    async def close(self) -> None:
        return None

    async def refresh(self, namespace: str) -> None:
        return None

    async def search_text(self, namespace: str, text: str, k: int) -> list[Hit]:
        """Words are searched by each replica's own index (RedisVectorStore.words), not by Redis."""
        return []

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        if k <= 0:
            return []
        tag = hashlib.sha1(namespace.encode()).hexdigest()
        query = (Query(f"(@nsh:{{{tag}}})=>[KNN {int(k)} @emb $vec AS dist]").sort_by("dist")
                 .return_fields("text", "session", "created", "turn", "dist").paging(0, int(k)).dialect(2))
        params = {"vec": np.ascontiguousarray(vector, dtype=np.float32).tobytes()}
        result = await self.link.run(lambda r: r.ft(self.index).search(query, query_params=params))
        key_prefix = f"{self.prefix}d:"
        # IP distance is 1 - <a, b>: back to FAISS's inner-product score
        return [Hit(_document(doc, int(doc.id[len(key_prefix):]), namespace), 1.0 - float(doc.dist))
                for doc in result.docs]


def _document(found, doc_id: int, namespace: str) -> Document:
    created = getattr(found, "created", None)
    return Document(doc_id, namespace, getattr(found, "text", ""), None, getattr(found, "session", None) or None,
                    float(created) if created else None, getattr(found, "turn", None) or None)
