"""The TLC classifier's own endpoints: classify a domain, extract TMD, validate a domain."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from libs.common.kit import open_write, problem_responses
from services.llm.classifier import TLCClassifier
from services.llm.taxonomy import (
    DOMAINS,
    METHODS,
    TASKS,
    TAXONOMY_VERSION,
    canonical_domain,
    closest_domains,
)

Query = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class ClassifyDomainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Query
    top_k: Annotated[int, msgspec.Meta(ge=1, le=len(DOMAINS))] = 3


class DomainScore(msgspec.Struct, kw_only=True):
    domain: str
    confidence: float


class ClassifyDomainResponse(msgspec.Struct, kw_only=True):
    query: str
    domains: list[DomainScore]
    primary_domain: str


class ExtractTMDRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Query
    context_docs: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=20_000)]], msgspec.Meta(max_length=20)
    ] = msgspec.field(default_factory=list)


class TMD(msgspec.Struct, kw_only=True):
    task: str
    method: str
    domain: str


class TMDConfidence(msgspec.Struct, kw_only=True):
    task: float
    method: float
    domain: float


class ExtractTMDResponse(msgspec.Struct, kw_only=True):
    query: str
    tmd: TMD
    confidence: TMDConfidence


class ValidateDomainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    domain: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ValidateDomainResponse(msgspec.Struct, kw_only=True):
    domain: str
    valid: bool
    canonical: str | None
    suggestions: list[str]


class Taxonomy(msgspec.Struct, kw_only=True):
    version: str
    domains: list[str]
    tasks: list[str]
    methods: list[str]


class TLCController(Controller):
    tags = ("tlc",)

    @post(
        "/classify_domain",
        status_code=200,
        responses=problem_responses(400, 401, 413, 503, 504),
        summary="The query's domains, with confidences from the model's token probabilities",
    )
    async def classify_domain(
        self, data: JSONBody[ClassifyDomainRequest], classifier: NamedDependency[TLCClassifier]
    ) -> ClassifyDomainResponse:
        ranked = await classifier.classify_domain(data.query)
        return ClassifyDomainResponse(
            query=data.query,
            domains=[DomainScore(domain=s.label, confidence=s.confidence) for s in ranked][
                : data.top_k
            ],
            primary_domain=ranked[0].label,
        )

    @post(
        "/extract_tmd",
        status_code=200,
        responses=problem_responses(400, 401, 413, 503, 504),
        summary="Task, method and domain of a query, each with its confidence",
    )
    async def extract_tmd(
        self, data: JSONBody[ExtractTMDRequest], classifier: NamedDependency[TLCClassifier]
    ) -> ExtractTMDResponse:
        task, method, domain = await classifier.extract_tmd(data.query, data.context_docs)
        return ExtractTMDResponse(
            query=data.query,
            tmd=TMD(task=task.label, method=method.label, domain=domain.label),
            confidence=TMDConfidence(
                task=task.confidence, method=method.confidence, domain=domain.confidence
            ),
        )

    @post(
        "/validate_domain",
        status_code=200,
        opt=open_write("a lookup in the fixed taxonomy, asked with a JSON body: no model call"),
        responses=problem_responses(400, 413),
        summary="Whether a domain string names a taxonomy member, and which",
    )
    async def validate_domain(
        self, data: JSONBody[ValidateDomainRequest]
    ) -> ValidateDomainResponse:
        canonical = canonical_domain(data.domain)
        return ValidateDomainResponse(
            domain=data.domain,
            valid=canonical is not None,
            canonical=canonical,
            suggestions=[] if canonical else closest_domains(data.domain),
        )

    @get("/taxonomy", summary="The label sets this classifier answers with")
    async def taxonomy(self) -> Taxonomy:
        return Taxonomy(
            version=TAXONOMY_VERSION,
            domains=list(DOMAINS),
            tasks=list(TASKS),
            methods=list(METHODS),
        )
