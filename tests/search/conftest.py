import numpy as np
import pytest

from tests.search.fakeweb import FILE_SECRET, FakeWeb


@pytest.fixture(scope="session")
def fake_web(tmp_path_factory):
    """Search APIs, result pages and a 'private' service on 127.0.0.1; reset before every test that uses it."""
    secret = tmp_path_factory.mktemp("secret") / "credentials.txt"
    secret.write_text(f"<p>{FILE_SECRET}</p>\n", encoding="utf-8")
    web = FakeWeb(file_secret_url=secret.as_uri()).start()
    yield web
    web.stop()


@pytest.fixture(autouse=True)
def _fresh_fake_web(request):
    if "fake_web" in request.fixturenames:
        request.getfixturevalue("fake_web").reset()


@pytest.fixture(scope="session")
def embed():
    """The server's own embedding model (all-MiniLM-L6-v2), to get the vector a turn would have computed."""
    from sentence_transformers import SentenceTransformer

    from server.memory.embedder import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")

    def vector(text: str) -> np.ndarray:
        return np.asarray(model.encode([text], normalize_embeddings=True)[0], dtype=np.float32)

    return vector
