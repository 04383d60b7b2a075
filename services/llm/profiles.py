"""Who each LLM service is: its agent definition (the spec's JSON) and Ollama defaults."""

from __future__ import annotations

import msgspec

from libs.common.schemas.agents import AgentDefinition


class LLMProfile(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    title: str
    agent: AgentDefinition
    ollama_model: str
    ollama_url: str


LLAMA31_8B = LLMProfile(
    service="llama31_8b",
    title="Llama 3.1 8B Wrapper",
    agent=AgentDefinition(
        agent_id="llm_llama31_8b",
        name="Llama 3.1 8B Service",
        tier=2,
        role="execution",
        capabilities=["reasoning", "planning", "code_review", "explanation"],
        endpoint="http://localhost:8050",
        transport="rest",
        cost_per_1k_tokens=0.0,
        metadata={"model": "llama3.1:8b", "provider": "ollama", "parameters": "8B"},
    ),
    ollama_model="llama3.1:8b",
    ollama_url="http://localhost:11434",
)

TINYLLAMA = LLMProfile(
    service="tinyllama",
    title="TinyLlama 1.1B Wrapper",
    agent=AgentDefinition(
        agent_id="llm_tinyllama_1b",
        name="TinyLlama 1.1B Service",
        tier=2,
        role="execution",
        capabilities=["classification", "tagging", "extraction", "filtering"],
        endpoint="http://localhost:8051",
        transport="rest",
        cost_per_1k_tokens=0.0,
        metadata={"model": "tinyllama:1.1b", "provider": "ollama", "parameters": "1.1B"},
    ),
    ollama_model="tinyllama:1.1b",
    ollama_url="http://localhost:11435",
)

TLC_CLASSIFIER = LLMProfile(
    service="tlc_classifier",
    title="TLC Domain Classifier",
    agent=AgentDefinition(
        agent_id="tlc_domain_classifier",
        name="TLC Domain Classifier",
        tier=2,
        role="execution",
        capabilities=["domain_classification", "tmd_extraction", "domain_validation"],
        endpoint="http://localhost:8052",
        transport="rest",
        cost_per_1k_tokens=0.0,
        metadata={
            "model": "tinyllama:1.1b",
            "provider": "ollama",
            "specialized_for": "TMD classification",
            "domain_taxonomy_version": "1.0",
        },
    ),
    ollama_model="tinyllama:1.1b",
    ollama_url="http://localhost:11435",
)
