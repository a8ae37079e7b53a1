"""What an upstream offers: its models and their context lengths, read from the answers of
the servers chatproxy knows. Pure code: bodies in, facts out.

- every OpenAI-compatible server: ``GET /v1/models`` lists the model ids (vLLM adds each
  model's ``max_model_len``);
- LM Studio: ``GET /api/v0/models`` gives each loaded model's ``loaded_context_length``
  (a model that is not loaded has none yet: LM Studio picks it when loading);
- llama.cpp: ``GET /props`` gives the context of the model it serves
  (``default_generation_settings.n_ctx``), and ``POST /tokenize`` counts tokens.
Unknown routes: LM Studio answers 200 with an ``error`` body, llama.cpp 404; neither is
mistaken for an answer here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jsonbytes

LMSTUDIO = "lmstudio"
LLAMA_CPP = "llama.cpp"
OPENAI = "openai"  # any other OpenAI-compatible server: model ids only


class NotThisKind(ValueError):
    """The body is not the answer this kind of server gives."""


@dataclass
class Catalog:
    """The last good model list of one upstream, and how its refreshes went."""

    models: dict[str, dict] = field(default_factory=dict)  # id -> the server's entry
    context_lengths: dict[str, int] = field(default_factory=dict)
    kind: str | None = None  # LMSTUDIO, LLAMA_CPP or OPENAI, once known
    fetched_at: float | None = None  # loop time of the last good list
    error: str | None = None  # why the last refresh failed (None: it worked)


def _json(body: bytes) -> object:
    try:
        return jsonbytes.loads(body, exact_integers=False)  # lists of models, up to megabytes
    except ValueError:
        raise NotThisKind("not JSON") from None


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_model_list(body: bytes) -> tuple[dict[str, dict], dict[str, int]]:
    """``GET /v1/models``: {id: entry}, and the context lengths the entries state (vLLM)."""
    parsed = _json(body)
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, list):
        raise NotThisKind("no 'data' list")
    models, lengths = {}, {}
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            models[entry["id"]] = entry
            length = _positive(entry.get("max_model_len"))
            if length:
                lengths[entry["id"]] = length
    return models, lengths


def parse_lmstudio_models(body: bytes) -> dict[str, int]:
    """``GET /api/v0/models``: the context length of each loaded model."""
    parsed = _json(body)
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, list) or not all(isinstance(entry, dict) and "state" in entry for entry in data):
        raise NotThisKind("not LM Studio's model list")
    lengths = {}
    for entry in data:
        length = _positive(entry.get("loaded_context_length"))
        if isinstance(entry.get("id"), str) and length:
            lengths[entry["id"]] = length
    return lengths


def parse_llama_props(body: bytes) -> int:
    """``GET /props``: the context length llama.cpp serves its model with."""
    parsed = _json(body)
    settings = parsed.get("default_generation_settings") if isinstance(parsed, dict) else None
    length = _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
    if length is None and isinstance(parsed, dict):
        length = _positive(parsed.get("n_ctx"))
    if length is None:
        raise NotThisKind("not llama.cpp's props")
    return length


def parse_token_count(body: bytes) -> int:
    """``POST /tokenize``: how many tokens llama.cpp made of the text."""
    parsed = _json(body)
    tokens = parsed.get("tokens") if isinstance(parsed, dict) else None
    if not isinstance(tokens, list):
        raise NotThisKind("no 'tokens' list")
    return len(tokens)
