"""Workflow versions and aliases: git is the record, memory the index, one thread runs git.

Versions never change once tagged, so their metadata is indexed in memory at start (one
``git for-each-ref``) and their definitions are cached once read: reads are answered without
git. Writes are serialised by one lock and run on one thread that owns the gitpython ``Repo``
(gitpython is not thread-safe), so the event loop keeps serving reads while git works. Memory
changes only after git has accepted a write.

The module passes 400 lines because reads and writes keep one index: a write changes memory
only after git accepted it, and a read answers from memory because of that, so both sit next
to the state they share. Git itself is ``git_repository.py``, the definitions' diff
``json_diff.py``, how a stored definition is read ``stored_definitions.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import msgspec
import structlog

from libs.common.schemas.versioning import (
    CHAMPION,
    LATEST,
    AliasMove,
    Author,
    CreateVersionRequest,
    RollbackRequest,
    VersionComparison,
    VersionHistory,
    VersionInfo,
    WorkflowDefinition,
    WorkflowSummary,
    WorkflowVersion,
)
from services.versioning.errors import (
    AliasNotFound,
    InvalidInput,
    RepositoryWriteFailed,
    VersionNotFound,
    WorkflowNotFound,
)
from services.versioning.git_repository import (
    TRAILER_RESTORES,
    TRAILER_VERSION,
    TRAILER_WORKFLOW,
    Identity,
    TaggedVersion,
    TagRequest,
    WorkflowRepository,
    aliases_path,
    compose_message,
    definition_path,
    tag_name,
)
from services.versioning.json_diff import diff_json
from services.versioning.metrics import VersioningMetrics
from services.versioning.stored_definitions import read_stored_definition

logger = structlog.get_logger("pas.versioning.catalog")

P = ParamSpec("P")
T = TypeVar("T")

TRAILER_ALIAS = "PAS-Alias"

_decode_aliases = msgspec.json.Decoder(dict[str, int]).decode


def encode_document(value: Any) -> bytes:
    """Stable, reviewable file content: two-space JSON, object keys sorted, final newline."""
    return msgspec.json.format(msgspec.json.encode(value, order="deterministic"), indent=2) + b"\n"


@dataclass
class _Workflow:
    versions: dict[int, TaggedVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest: int = 0

    def add(self, record: TaggedVersion) -> None:
        self.versions[record.version] = record
        self.latest = max(self.latest, record.version)

    def aliases_of(self, version: int) -> list[str]:
        names = [name for name, number in self.aliases.items() if number == version]
        if version == self.latest:
            names.append(LATEST)
        return sorted(names)


class VersionCatalog:
    def __init__(
        self,
        repository: WorkflowRepository,
        *,
        committer: Identity,
        metrics: VersioningMetrics,
        cache_size: int = 4096,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._git = repository
        self._committer = committer
        self._metrics = metrics
        self._cache_size = cache_size
        self._on_change = on_change
        self._workflows: dict[str, _Workflow] = {}
        self._definitions: OrderedDict[tuple[str, int], WorkflowDefinition] = OrderedDict()
        # The highest version tag number per workflow at start, versions passed over included.
        self._highest_tags: dict[str, int] = {}
        # Made by open(), in the event loop and lifespan that use them.
        self._write_lock = asyncio.Lock()
        self._git_thread: ThreadPoolExecutor | None = None
        self.head: str | None = None

    async def _in_git(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        assert self._git_thread is not None, "VersionCatalog.open() was not awaited"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._git_thread, functools.partial(call, *args, **kwargs)
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        self._git_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pas-git")
        self._write_lock = asyncio.Lock()
        self._workflows = {}
        self._definitions.clear()
        for note in await self._in_git(self._git.open):
            logger.warning("repository repaired at start", repair=note, path=str(self._git.path))
        tagged, aliases, self._highest_tags, head = await self._in_git(self._read_index)
        for record in tagged:
            self._workflows.setdefault(record.workflow_id, _Workflow()).add(record)
        for workflow_id, names in aliases.items():
            state = self._workflows.get(workflow_id)
            for alias, version in names.items():
                if state is None or version not in state.versions:
                    logger.warning(
                        "alias points at no version; ignored",
                        workflow_id=workflow_id,
                        alias=alias,
                        version=version,
                    )
                    continue
                state.aliases[alias] = version
        self.head = head
        logger.info(
            "version catalog loaded",
            workflows=len(self._workflows),
            versions=self.version_count(),
            head=head,
        )

    def _read_index(
        self,
    ) -> tuple[list[TaggedVersion], dict[str, dict[str, int]], dict[str, int], str]:
        tip = self._git.tip()
        aliases = {
            name.removesuffix(".json"): _decode_aliases(content)
            for name, content in self._git.files(tip, "aliases").items()
            if name.endswith(".json")
        }
        return self._git.tagged_versions(), aliases, self._git.highest_version_tags(), tip

    async def close(self) -> None:
        if self._git_thread is None:
            return
        await self._in_git(self._git.close)
        self._git_thread.shutdown(wait=True)
        self._git_thread = None

    # -- reads --------------------------------------------------------------------------------

    def version_count(self) -> int:
        return sum(len(state.versions) for state in self._workflows.values())

    def workflow_count(self) -> int:
        return len(self._workflows)

    def summaries(self) -> list[WorkflowSummary]:
        return [
            WorkflowSummary(
                workflow_id=workflow_id,
                latest=state.latest,
                versions=len(state.versions),
                aliases=dict(sorted(state.aliases.items())),
                latest_created_at=state.versions[state.latest].created_at,
            )
            for workflow_id, state in sorted(self._workflows.items())
        ]

    def history(self, workflow_id: str) -> VersionHistory:
        state = self._workflow(workflow_id)
        return VersionHistory(
            workflow_id=workflow_id,
            aliases=dict(sorted(state.aliases.items())),
            versions=[
                self._info(state, record)
                for _, record in sorted(state.versions.items(), reverse=True)
            ],
        )

    def has_version(self, workflow_id: str, version: int) -> bool:
        state = self._workflows.get(workflow_id)
        return state is not None and version in state.versions

    def alias_target(self, workflow_id: str, alias: str) -> int:
        state = self._workflow(workflow_id)
        if alias == LATEST:
            return state.latest
        try:
            return state.aliases[alias]
        except KeyError:
            raise AliasNotFound(workflow_id, alias, [LATEST, *sorted(state.aliases)]) from None

    async def version(self, workflow_id: str, version: int) -> WorkflowVersion:
        state = self._workflow(workflow_id)
        record = self._record(state, workflow_id, version)
        definition = await self._definition(record)
        return WorkflowVersion(
            **msgspec.structs.asdict(self._info(state, record)), definition=definition
        )

    async def resolve(self, workflow_id: str, alias: str) -> WorkflowVersion:
        return await self.version(workflow_id, self.alias_target(workflow_id, alias))

    async def compare(self, workflow_id: str, v1: int, v2: int) -> VersionComparison:
        state = self._workflow(workflow_id)
        old, new = self._record(state, workflow_id, v1), self._record(state, workflow_id, v2)
        old_definition, new_definition = await self._definition(old), await self._definition(new)
        changes = diff_json(
            msgspec.to_builtins(old_definition), msgspec.to_builtins(new_definition)
        )
        text = await self._in_git(
            self._git.diff,
            old.commit,
            new.commit,
            definition_path(workflow_id),
            f"v{v1}",
            f"v{v2}",
        )
        return VersionComparison(
            workflow_id=workflow_id,
            v1=v1,
            v2=v2,
            added=changes.added,
            removed=changes.removed,
            modified=changes.modified,
            unified_diff=text,
        )

    def _workflow(self, workflow_id: str) -> _Workflow:
        try:
            return self._workflows[workflow_id]
        except KeyError:
            raise WorkflowNotFound(workflow_id) from None

    @staticmethod
    def _record(state: _Workflow, workflow_id: str, version: int) -> TaggedVersion:
        try:
            return state.versions[version]
        except KeyError:
            raise VersionNotFound(workflow_id, version, state.latest) from None

    @staticmethod
    def _info(state: _Workflow, record: TaggedVersion) -> VersionInfo:
        return VersionInfo(
            workflow_id=record.workflow_id,
            version=record.version,
            tag=record.tag,
            commit=record.commit,
            author=Author(name=record.author.name, email=record.author.email),
            message=record.message,
            created_at=record.created_at,
            aliases=state.aliases_of(record.version),
            restored_from=record.restored_from,
        )

    async def _definition(self, record: TaggedVersion) -> WorkflowDefinition:
        key = (record.workflow_id, record.version)
        cached = self._definitions.get(key)
        if cached is not None:
            self._definitions.move_to_end(key)
            return cached
        content = await self._in_git(
            self._git.read, record.commit, definition_path(record.workflow_id)
        )
        stored = read_stored_definition(content)
        if stored.dropped_stops:
            logger.info(
                "empty stop sequences of a stored version left out",
                workflow_id=record.workflow_id,
                version=record.version,
                dropped=stored.dropped_stops,
            )
        self._remember(key, stored.definition)
        return stored.definition

    def _remember(self, key: tuple[str, int], definition: WorkflowDefinition) -> None:
        if self._cache_size == 0:
            return
        self._definitions[key] = definition
        self._definitions.move_to_end(key)
        while len(self._definitions) > self._cache_size:
            self._definitions.popitem(last=False)

    # -- writes -------------------------------------------------------------------------------

    async def create_version(
        self, workflow_id: str, request: CreateVersionRequest
    ) -> WorkflowVersion:
        if request.definition.workflow_id != workflow_id:
            raise InvalidInput(
                f"definition.workflow_id is {request.definition.workflow_id!r} but the path "
                f"names {workflow_id!r}; they must be the same"
            )
        _refuse_latest(request.aliases)
        version = await self._write(
            lambda: self._create(
                workflow_id,
                request.definition,
                message=request.message,
                author=request.author,
                aliases=set(request.aliases),
            )
        )
        self._metrics.versions_created.labels("create").inc()
        return await self.version(workflow_id, version)

    async def rollback(self, workflow_id: str, request: RollbackRequest) -> WorkflowVersion:
        """Write version ``request.version``'s content as a new version and make it champion.

        History is never rewritten and HEAD never leaves the branch (the spec's ``git checkout
        <tag>`` would do both); the version rolled back from stays as it was.
        """
        state = self._workflow(workflow_id)
        definition = await self._definition(self._record(state, workflow_id, request.version))
        champion = state.aliases.get(CHAMPION)
        subject = f"Roll back {workflow_id} to version {request.version}"
        if champion is not None:
            subject += f" (champion was version {champion})"
        version = await self._write(
            lambda: self._create(
                workflow_id,
                definition,
                message=f"{subject}\n\n{request.message}" if request.message else subject,
                author=request.author,
                aliases={CHAMPION},
                restores=request.version,
            )
        )
        self._metrics.versions_created.labels("rollback").inc()
        return await self.version(workflow_id, version)

    async def move_alias(
        self,
        workflow_id: str,
        alias: str,
        version: int,
        *,
        author: Author | None = None,
        message: str | None = None,
        trailers: Mapping[str, str] | None = None,
    ) -> AliasMove:
        _refuse_latest([alias])
        return await self._write(
            lambda: self._move(
                workflow_id,
                alias,
                version,
                author=author,
                message=message,
                trailers=trailers or {},
            )
        )

    async def recorded_move(
        self, workflow_id: str, alias: str, version: int, trailers: Mapping[str, str]
    ) -> AliasMove | None:
        """The move of ``alias`` to ``version`` that a commit carrying ``trailers`` made, as
        ``move_alias`` answered it then; ``None`` if no commit did. A caller whose record of a
        move was lost (a stop between the commit and its own write) finds it here: moving
        again changes nothing and would name the new version as the previous one."""
        path = aliases_path(workflow_id)
        wanted = {TRAILER_WORKFLOW: workflow_id, TRAILER_ALIAS: f"{alias}={version}", **trailers}
        found = await self._in_git(self._git.last_commit_with, path, wanted)
        if found is None:
            return None
        previous = None
        if found.parent is not None:
            with contextlib.suppress(KeyError):  # the move created the aliases file
                before = await self._in_git(self._git.read, found.parent, path)
                previous = _decode_aliases(before).get(alias)
        return AliasMove(
            workflow_id=workflow_id,
            alias=alias,
            version=version,
            previous=previous,
            changed=True,
            commit=found.commit,
            moved_at=found.committed_at,
        )

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` under the write lock, shielded: a caller that goes away half-way must
        not leave git ahead of memory."""

        async def locked() -> T:
            async with self._write_lock:
                try:
                    return await work()
                except RepositoryWriteFailed:
                    self._metrics.write_failures.inc()
                    raise

        result = await asyncio.shield(asyncio.ensure_future(locked()))
        self._on_change()
        return result

    def _next_version(self, workflow_id: str) -> int:
        """One past the newest version, and past every tag of the workflow: a tag the index
        passes over (not written by the version manager, unreadable) still holds its name."""
        state = self._workflows.get(workflow_id)
        newest = state.latest if state else 0
        return max(newest, self._highest_tags.get(workflow_id, 0)) + 1

    async def _create(
        self,
        workflow_id: str,
        definition: WorkflowDefinition,
        *,
        message: str,
        author: Author,
        aliases: set[str],
        restores: int | None = None,
    ) -> int:
        state = self._workflows.get(workflow_id)
        version = self._next_version(workflow_id)
        if state is None:
            aliases = aliases | {CHAMPION}
        new_aliases = {**(state.aliases if state else {}), **dict.fromkeys(aliases, version)}
        trailers = {TRAILER_WORKFLOW: workflow_id, TRAILER_VERSION: str(version)}
        if restores is not None:
            trailers[TRAILER_RESTORES] = str(restores)
        changes = {definition_path(workflow_id): encode_document(definition)}
        if state is None or new_aliases != state.aliases:
            changes[aliases_path(workflow_id)] = encode_document(new_aliases)
        tag = tag_name(workflow_id, version)
        identity = Identity(author.name, author.email)
        result = await self._in_git(
            self._git.commit,
            changes,
            message=compose_message(message, trailers),
            author=identity,
            tag=TagRequest(tag, f"{workflow_id} version {version}"),
        )
        state = self._workflows.setdefault(workflow_id, _Workflow())
        state.add(
            TaggedVersion(
                workflow_id=workflow_id,
                version=version,
                tag=tag,
                commit=result.commit,
                author=identity,
                created_at=result.committed_at,
                message=message.rstrip(),
                restored_from=restores,
            )
        )
        state.aliases = new_aliases
        self.head = result.commit
        self._remember((workflow_id, version), definition)
        logger.info(
            "version created",
            workflow_id=workflow_id,
            version=version,
            commit=result.commit,
            aliases=sorted(aliases),
            restored_from=restores,
        )
        return version

    async def _move(
        self,
        workflow_id: str,
        alias: str,
        version: int,
        *,
        author: Author | None,
        message: str | None,
        trailers: Mapping[str, str],
    ) -> AliasMove:
        state = self._workflow(workflow_id)
        self._record(state, workflow_id, version)
        previous = state.aliases.get(alias)
        if previous == version:
            return AliasMove(
                workflow_id=workflow_id,
                alias=alias,
                version=version,
                previous=previous,
                changed=False,
                commit=None,
                moved_at=_now_utc(),
            )
        aliases = {**state.aliases, alias: version}
        subject = f"Move {alias} of {workflow_id} to version {version}"
        if previous is not None:
            subject += f" (was version {previous})"
        body = f"{subject}\n\n{message}" if message else subject
        identity = Identity(author.name, author.email) if author else self._committer
        result = await self._in_git(
            self._git.commit,
            {aliases_path(workflow_id): encode_document(aliases)},
            message=compose_message(
                body,
                {TRAILER_WORKFLOW: workflow_id, TRAILER_ALIAS: f"{alias}={version}", **trailers},
            ),
            author=identity,
        )
        state.aliases = aliases
        self.head = result.commit
        self._metrics.alias_moves.labels(alias).inc()
        logger.info(
            "alias moved",
            workflow_id=workflow_id,
            alias=alias,
            version=version,
            previous=previous,
            commit=result.commit,
        )
        return AliasMove(
            workflow_id=workflow_id,
            alias=alias,
            version=version,
            previous=previous,
            changed=True,
            commit=result.commit,
            moved_at=result.committed_at,
        )


def _refuse_latest(aliases: list[str]) -> None:
    if LATEST in aliases:
        raise InvalidInput(f"{LATEST!r} always names the newest version; it cannot be moved")


def _now_utc() -> datetime:
    return datetime.now(UTC)
