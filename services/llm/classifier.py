"""Domain and TMD classification from the model's own token probabilities.

For each label the model is asked for the probability of answering with exactly that label;
the confidences are those probabilities renormalised over the label set. Whatever the model
would have written, only taxonomy members come back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from libs.common.errors import InvalidRequest
from services.llm.backends.base import ChoiceScorer, Turn
from services.llm.taxonomy import DOMAINS, METHODS, TASKS

_MAX_CONTEXT_CHARS = 2000

# A few worked examples steer a small model to answer with a label at all.
_DOMAIN_SHOTS = [
    ("What causes high blood pressure?", "Medicine"),
    ("How do interest rates affect bond prices?", "Economics"),
    ("Who wrote Hamlet?", "Literature"),
]
_TASK_SHOTS = [
    ("Why do bond prices fall when rates rise?", "Explain"),
    ("What was Apple's revenue in 2023?", "Answer"),
    ("Summarize this earnings call.", "Summarize"),
]
_METHOD_SHOTS = [
    ("What did the 10-K say about supply chain risk?", "Dense"),
    ("Find filings that mention ticker NVDA.", "Sparse"),
    ("What is 2 plus 2?", "None"),
]


class Scored(msgspec.Struct, frozen=True):
    label: str
    confidence: float


def _ask(instruction: str, shots: list[tuple[str, str]], question: str) -> list[Turn]:
    turns = [Turn(role="system", content=instruction)]
    for example, answer in shots:
        turns += [Turn(role="user", content=example), Turn(role="assistant", content=answer)]
    turns.append(Turn(role="user", content=question))
    return turns


def _ordered_for_prompt(labels: Mapping[str, str]) -> list[str]:
    # Catch-all labels go last, so that the model reads the specific ones first.
    catch_all = {"FACTOIDWIKI", "OTHER", "NONE"}
    return [w for k, w in labels.items() if k not in catch_all] + [
        w for k, w in labels.items() if k in catch_all
    ]


def _normalise(labels: list[str], log_probs: list[float]) -> list[Scored]:
    peak = max(log_probs)
    weights = [math.exp(lp - peak) for lp in log_probs]
    total = sum(weights)
    return sorted(
        (Scored(label, round(w / total, 4)) for label, w in zip(labels, weights, strict=True)),
        key=lambda s: -s.confidence,
    )


class TLCClassifier:
    def __init__(self, scorer: ChoiceScorer) -> None:
        self._scorer = scorer

    async def _rank(
        self,
        labels: Mapping[str, str],
        what: str,
        shots: list[tuple[str, str]],
        question: str,
        *,
        asked: str = "query",
    ) -> list[Scored]:
        """``asked`` names what the question is made of, to say what to shorten if too long."""
        instruction = (
            f"Classify each question by its {what}. Answer with exactly one of: "
            + ", ".join(_ordered_for_prompt(labels))
            + "."
        )
        try:
            log_probs = await self._scorer.score_choices(
                _ask(instruction, shots, question), list(labels.values())
            )
        except InvalidRequest as exc:
            raise InvalidRequest(f"{exc}: shorten the {asked}") from exc
        return _normalise(list(labels), log_probs)

    async def classify_domain(self, query: str) -> list[Scored]:
        return await self._rank(DOMAINS, "domain", _DOMAIN_SHOTS, query)

    async def extract_tmd(
        self, query: str, context_docs: list[str]
    ) -> tuple[Scored, Scored, Scored]:
        question, asked = query, "query"
        if context_docs:
            context = "\n".join(context_docs)[:_MAX_CONTEXT_CHARS]
            question, asked = f"{query}\n\nContext:\n{context}", "query or the context_docs"
        task = (await self._rank(TASKS, "task", _TASK_SHOTS, question, asked=asked))[0]
        method = (
            await self._rank(METHODS, "retrieval method", _METHOD_SHOTS, question, asked=asked)
        )[0]
        domain = (await self._rank(DOMAINS, "domain", _DOMAIN_SHOTS, question, asked=asked))[0]
        return task, method, domain
