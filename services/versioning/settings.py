"""The version manager's settings, read from ``VERSIONING_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec

from libs.common.constants import TOPIC_VERSIONING_DLQ, TOPIC_WORKFLOW_RESULTS, VERSIONING_PORT
from libs.common.kit import ServiceSettings
from libs.common.schemas.versioning import IdentityEmail, IdentityName


class VersioningSettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "VERSIONING_"
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
    }

    port: int = VERSIONING_PORT
    repo_path: Annotated[str, msgspec.Meta(min_length=1)] = ".pas/data/versioning/repo"
    """The git repository of workflow definitions; created and initialised on first start."""
    database_path: str | None = None
    """SQLite file of experiments and outcomes. Default: ``experiments.db`` in the folder that
    holds the repository."""
    branch: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")] = "main"
    token: str | None = None
    """When set, every write needs ``Authorization: Bearer <token>``."""
    remote: str | None = None
    """A git remote URL or path; the branch and tags are pushed there after each change.
    Credentials in an http(s) URL (``https://user:secret@host/repo.git``) are handed to git
    per push from memory, never written to the repository's ``.git/config``."""
    committer_name: IdentityName = "PAS version manager"
    committer_email: IdentityEmail = "versioning@pas.invalid"
    """Committer (and tagger) of every commit; the author of changes that name none."""
    cache_size: Annotated[int, msgspec.Meta(ge=0)] = 4096
    """Version definitions kept decoded in memory (versions never change once written)."""
    bootstrap_servers: str | None = None
    """When set, outcomes of experiment runs are read from ``results_topic`` on this cluster."""
    results_topic: str = TOPIC_WORKFLOW_RESULTS
    dlq_topic: str = TOPIC_VERSIONING_DLQ
    """Where events that carry an experiment id but cannot become an outcome go, with why."""
    group_id: str = "pas-versioning"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts on ``results_topic``."""
    kafka_session_timeout_ms: Annotated[int, msgspec.Meta(ge=1000, le=300_000)] = 10_000
    """How long the group waits for a silent consumer before moving its partitions."""

    def database_file(self) -> Path:
        if self.database_path:
            return Path(self.database_path)
        return Path(self.repo_path).resolve().parent / "experiments.db"
