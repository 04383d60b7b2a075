"""The TMD-LS label sets: domains (the spec's 21), tasks and methods.

Each label has the words the model is asked to answer with; the API always returns the label.
"""

from __future__ import annotations

import difflib
import re

TAXONOMY_VERSION = "1.0"

# The spec's domain taxonomy, in the spec's order, with the words shown to the model.
DOMAINS: dict[str, str] = {
    "FACTOIDWIKI": "Trivia",
    "ARTIFICIAL_INTELLIGENCE": "Artificial Intelligence",
    "MEDICINE": "Medicine",
    "BIOLOGY": "Biology",
    "PHYSICS": "Physics",
    "CHEMISTRY": "Chemistry",
    "MATHEMATICS": "Mathematics",
    "COMPUTER_SCIENCE": "Computer Science",
    "ENGINEERING": "Engineering",
    "HISTORY": "History",
    "LITERATURE": "Literature",
    "PHILOSOPHY": "Philosophy",
    "LAW": "Law",
    "ECONOMICS": "Economics",
    "BUSINESS": "Business",
    "PSYCHOLOGY": "Psychology",
    "SOCIOLOGY": "Sociology",
    "GEOGRAPHY": "Geography",
    "SPORTS": "Sports",
    "ENTERTAINMENT": "Entertainment",
    "OTHER": "Other",
}

# What the query asks for.
TASKS: dict[str, str] = {
    "ANSWER": "Answer",  # a direct question of fact
    "EXPLAIN": "Explain",  # how or why something works
    "SUMMARIZE": "Summarize",  # condense given material
    "COMPARE": "Compare",  # weigh two or more things
    "CLASSIFY": "Classify",  # put something in a category
    "EXTRACT": "Extract",  # pull figures or entities out of text
    "CALCULATE": "Calculate",  # compute a number
    "RECOMMEND": "Recommend",  # advise on a choice
    "OTHER": "Other",
}

# How the knowledge to answer it is best retrieved.
METHODS: dict[str, str] = {
    "DENSE": "Dense",  # semantic vector search over documents
    "SPARSE": "Sparse",  # keyword search (exact names, tickers, codes)
    "HYBRID": "Hybrid",  # both of the above
    "GRAPH": "Graph",  # relations between entities
    "TABULAR": "Tabular",  # figures in tables or time series
    "NONE": "None",  # the model's own knowledge suffices
}

_SEPARATORS = re.compile(r"[\s\-/]+")


def canonical_domain(text: str) -> str | None:
    """The taxonomy label ``text`` names (``medicine``, ``Computer Science``), else None."""
    candidate = _SEPARATORS.sub("_", text.strip()).upper()
    if candidate in DOMAINS:
        return candidate
    for label, words in DOMAINS.items():
        if words.lower() == text.strip().lower():
            return label
    return None


def closest_domains(text: str, limit: int = 3) -> list[str]:
    candidate = _SEPARATORS.sub("_", text.strip()).upper()
    return difflib.get_close_matches(candidate, list(DOMAINS), n=limit, cutoff=0.5)
