"""Property-based fuzzing of the three LLM services' own OpenAPI schemas with schemathesis.

The Llama 3.1 8B and TinyLlama wrappers and the TLC classifier run as real uvicorn processes on
the real embedded model. Every operation gets generated inputs, valid and invalid; no answer may
be a 5xx, and every answer must match the schema the service publishes. Each model call runs
the model, so the run is kept small: requests are generated from the published schema with
the token budgets (``max_tokens``, ``max_completion_tokens``, ``num_predict``) capped at 4, the
services run with a 256-token context, and the operations that call the model get fewer
examples than the others. The generation routes are three handlers
(``services/llm/openai_api.py``, ``ollama_api.py``) shared by all three services, so the
coverage phase's boundary cases (tens per operation, each a model call) run once per handler,
against the Llama 3.1 wrapper, and every other generation path gets the random phase only;
the embedding routes (three handlers, each text embedded by the model) alike. Two
checks are left out on purpose:

- "schema-violating request accepted": Litestar converts lossless scalar forms (``0`` for
  ``false``) instead of refusing them (as for the registry);
- "schema-valid request rejected": the request schemas are OpenAI's and Ollama's, wider than
  what PAS serves, and what PAS does not support is refused with a 400 that names the field
  (``libs/common/schemas/llm.py``); a prompt longer than the model's context is refused too;
  and Litestar does not publish ``additionalProperties: false`` for the TLC requests, whose
  Structs forbid unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.llm.llama31_8b_service import Llama31Settings
from services.llm.llama31_8b_service import create_app as create_llama31
from services.llm.tinyllama_service import TinyLlamaSettings
from services.llm.tinyllama_service import create_app as create_tinyllama
from services.llm.tlc_classifier_service import TLCSettings
from services.llm.tlc_classifier_service import create_app as create_tlc
from tests.support.openapi_document import published
from tests.support.processes import ServiceProcess, free_port

# Tens of model calls per operation: more time than the suite's default guard.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GENERATION = r"^(/v1)?/chat/completions$|^/generate$|^/api/(chat|generate)$"
CLASSIFICATION = r"^/(classify_domain|extract_tmd|validate_domain)$"
EMBEDDINGS = r"^(/v1)?/embeddings$|^/api/(embed|embeddings)$"
MODEL_CALLS = f"{GENERATION}|{CLASSIFICATION}|{EMBEDDINGS}"
CAPS = {"max_tokens": 4, "max_completion_tokens": 4, "num_predict": 4, "n": 2, "input": 4}
"""The most tokens, choices (answers) and texts to embed a fuzzed request asks for (an
integer's maximum, an array's length): each costs model time."""


class LLMService(NamedTuple):
    env_prefix: str
    app: str
    build: Callable[[], Litestar]
    """The same app in this process, never started: only its OpenAPI document is read."""
    port: int


SERVICES = {
    "llama31_8b": LLMService(
        "LLAMA31_8B_",
        "services.llm.llama31_8b_service:app",
        lambda: create_llama31(Llama31Settings(register=False)),
        free_port(),
    ),
    "tinyllama": LLMService(
        "TINYLLAMA_",
        "services.llm.tinyllama_service:app",
        lambda: create_tinyllama(TinyLlamaSettings(register=False)),
        free_port(),
    ),
    "tlc_classifier": LLMService(
        "TLC_",
        "services.llm.tlc_classifier_service:app",
        lambda: create_tlc(TLCSettings(register=False)),
        free_port(),
    ),
}


def _capped(node: Any) -> Any:
    """The document with the maximum of every field in ``CAPS`` at its cap (requests only)."""
    if isinstance(node, list):
        return [_capped(item) for item in node]
    if not isinstance(node, dict):
        return node
    capped = {key: _capped(value) for key, value in node.items()}
    for name in CAPS.keys() & set(capped.get("properties", {})):
        for option in capped["properties"][name].get("anyOf", [capped["properties"][name]]):
            if option.get("type") == "integer":
                option["maximum"] = CAPS[name]
            elif option.get("type") == "array":
                option["maxItems"] = CAPS[name]
    return capped


DOCUMENTS = {name: published(service.build()) for name, service in SERVICES.items()}


def _schema(name: str, *, coverage: bool = True) -> OpenApiSchema:
    document = DOCUMENTS[name]
    schema = schemathesis.openapi.from_dict({**document, "paths": _capped(document["paths"])})
    schema.config.update(base_url=f"http://127.0.0.1:{SERVICES[name].port}", request_timeout=120)
    schema.config.phases.coverage.enabled = coverage
    return schema


SCHEMAS = {name: _schema(name) for name in SERVICES}
# The coverage phase's boundary cases run once per handler, on the Llama 3.1 wrapper's first
# path for it; the other paths to the same handlers, and the other two services' generation
# routes, get the random phase.
ALIASES = r"^/chat/completions$|^/generate$"
GENERATION_SCHEMAS = {
    "llama31_8b": _schema("llama31_8b").include(path_regex=GENERATION).exclude(path_regex=ALIASES),
    "llama31_8b_aliases": _schema("llama31_8b", coverage=False).include(path_regex=ALIASES),
    **{
        name: _schema(name, coverage=False).include(path_regex=GENERATION)
        for name in ("tinyllama", "tlc_classifier")
    },
}
# Embeddings likewise (three handlers, each text a model call): the coverage phase once, on the
# Llama 3.1 wrapper's own paths; its /embeddings alias and the other services get random cases.
EMBEDDING_SCHEMAS = {
    "llama31_8b": _schema("llama31_8b").include(path_regex=EMBEDDINGS).exclude(path="/embeddings"),
    **{
        name: _schema(name, coverage=False).include(path_regex=EMBEDDINGS)
        for name in ("tinyllama", "tlc_classifier")
    },
    "llama31_8b_alias": _schema("llama31_8b", coverage=False).include(path="/embeddings"),
}
EXCLUDED: list[CheckFunction] = [negative_data_rejection, positive_data_acceptance]


@pytest.fixture(scope="module", autouse=True)
def running_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The three services as processes on their ports, each with a small context."""
    logs = tmp_path_factory.mktemp("llm-fuzz")
    started: list[ServiceProcess] = []
    try:
        for name, service in SERVICES.items():
            environment = {
                f"{service.env_prefix}REGISTER": "false",
                f"{service.env_prefix}CONTEXT_LENGTH": "256",
                f"{service.env_prefix}DEFAULT_MAX_TOKENS": str(CAPS["max_tokens"]),
            }
            process = ServiceProcess(service.app, service.port, environment, logs / f"{name}.log")
            started.append(process.start())
        yield
    finally:
        for process in started:
            process.stop()


@schemathesis.pytest.parametrize(**GENERATION_SCHEMAS)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_generation_conforms_to_the_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


@schemathesis.pytest.parametrize(**EMBEDDING_SCHEMAS)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_embeddings_conform_to_the_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


@SCHEMAS["tlc_classifier"].include(path_regex=CLASSIFICATION).parametrize()
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_classification_conforms_to_the_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


@schemathesis.pytest.parametrize(
    **{name: schema.exclude(path_regex=MODEL_CALLS) for name, schema in SCHEMAS.items()}
)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_other_operations_conform_to_the_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)
