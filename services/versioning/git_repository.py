"""The git repository behind the version manager, driven through gitpython.

Layout, on one branch (``main`` by default)::

    README.md               what this repository is
    workflows/<id>.json     the definition of the workflow's newest version
    aliases/<id>.json       {"champion": 3, ...}

Every version is a commit that writes ``workflows/<id>.json``, with an annotated tag
``<id>-v<N>``. Commit messages end with ``PAS-Workflow``, ``PAS-Version`` and (for rollbacks)
``PAS-Restores`` trailers, so that the whole history can be rebuilt from git alone.

Writes are atomic. Blobs, tree and commit are built off to the side, in a temporary index; the
tag is created on that commit; only then does the branch move, by a compare-and-swap
``update-ref``. A failure before the branch moves deletes the tag it made, and the objects
written so far are unreferenced (``git gc`` prunes them). The working tree is brought up to
date after the branch moved: it is a view for people, never the source of truth. A process
killed half-way leaves at worst an unmerged tag and a stale working tree, which ``open``
repairs at the next start.

A gitpython ``Repo`` is not thread-safe (it keeps ``git cat-file`` processes open), so one
thread at a time may use a ``WorkflowRepository``; ``VersionCatalog`` gives it its own.

The module passes 400 lines because its guarantee is one: the atomic write, the repair at
``open`` that finishes what an interrupted write left, and the reads that trust only the tags
on the branch all rest on the same layout, tags and trailers. The remote stands apart: its
credentials and the push are in ``git_remote.py``; here ``.git/config`` gets its bare URL only.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from git import Blob, GitCommandError, Repo, Tree

from libs.common.errors import PASError
from libs.common.telemetry import pas_span
from services.versioning.errors import RepositoryWriteFailed
from services.versioning.git_remote import REMOTE_NAME, RemoteAccess

logger = structlog.get_logger("pas.versioning.git")

TRAILER_WORKFLOW = "PAS-Workflow"
TRAILER_VERSION = "PAS-Version"
TRAILER_RESTORES = "PAS-Restores"
README_PATH = "README.md"

_VERSION_TAG = re.compile(r"^(?P<workflow>[A-Za-z0-9][A-Za-z0-9_-]*)-v(?P<version>[1-9][0-9]*)$")
# The trailers follow a blank line, or open the text: git drops the blank lines before them
# when the caller's message was only whitespace (refused since, but still in old histories).
_TRAILER_BLOCK = re.compile(r"(?:\A|\n\n)((?:PAS-[A-Za-z-]+: [^\n]*(?:\n|\Z))+)\Z")
_ZERO_OID = "0" * 40
_STAGING_DIR = "pas-staging"
# for-each-ref: fields split by NUL; `*` reads the commit an annotated tag points at.
_TAG_FIELDS = (
    "%(refname:strip=2)",
    "%(objecttype)",
    "%(*objectname)",
    "%(*authorname)",
    "%(*authoremail)",
    "%(*authordate:unix)",
    "%(*contents)",
)
_README = b"""# PAS workflow definitions

Written by the PAS version manager; change it through its REST API, not by hand.

- `workflows/<id>.json`: the newest version of each workflow. Every version is a commit
  tagged `<id>-v<N>` (`git show <id>-v3:workflows/<id>.json` prints version 3).
- `aliases/<id>.json`: where each alias (`champion`, ...) points; every move is a commit.
"""


class RepositoryError(PASError):
    """The repository cannot be used (not a git working tree, unreadable)."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class TagRequest:
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit: str
    committed_at: datetime


@dataclass(frozen=True, slots=True)
class FoundCommit:
    commit: str
    parent: str | None
    committed_at: datetime


@dataclass(frozen=True, slots=True)
class TaggedVersion:
    """A version as git records it: tag, commit, author, time and the caller's message."""

    workflow_id: str
    version: int
    tag: str
    commit: str
    author: Identity
    created_at: datetime
    message: str
    restored_from: int | None


def tag_name(workflow_id: str, version: int) -> str:
    return f"{workflow_id}-v{version}"


def definition_path(workflow_id: str) -> str:
    return f"workflows/{workflow_id}.json"


def aliases_path(workflow_id: str) -> str:
    return f"aliases/{workflow_id}.json"


def compose_message(message: str, trailers: Mapping[str, str]) -> str:
    block = "".join(f"{key}: {value}\n" for key, value in trailers.items())
    return f"{message.rstrip()}\n\n{block}"


def split_message(full: str) -> tuple[str, dict[str, str]]:
    """The caller's message and the ``PAS-*`` trailers ``compose_message`` appended."""
    match = _TRAILER_BLOCK.search(full.rstrip("\n") + "\n")
    if match is None:
        return full.rstrip("\n"), {}
    trailers = dict(line.split(": ", 1) for line in match.group(1).splitlines() if line.strip())
    return full[: match.start()].rstrip("\n"), trailers


class WorkflowRepository:
    def __init__(
        self,
        path: Path,
        *,
        branch: str,
        committer: Identity,
        remote: RemoteAccess | None = None,
    ) -> None:
        self.path = path
        self.branch = branch
        self._ref = f"refs/heads/{branch}"
        self._committer = committer
        self._remote = remote
        self._repo_handle: Repo | None = None

    @property
    def _repo(self) -> Repo:
        assert self._repo_handle is not None, "WorkflowRepository.open() was not called"
        return self._repo_handle

    # -- opening and repair -------------------------------------------------------------------

    def open(self) -> list[str]:
        """Create the repository on first start, else repair what an interrupted write or a
        hand edit left; returns what was repaired, for the log."""
        repaired: list[str] = []
        if not (self.path / ".git").exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise RepositoryError(
                    f"{self.path} is not empty and not a git repository; point "
                    "VERSIONING_REPO_PATH at an empty folder or an existing repository"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            Repo.init(self.path, initial_branch=self.branch).close()
            logger.info("created the workflow repository", path=str(self.path))
        repo = Repo(self.path)
        if repo.bare:
            repo.close()
            raise RepositoryError(f"{self.path} is a bare repository; a working tree is needed")
        self._repo_handle = repo
        self._configure()
        shutil.rmtree(self._staging_root(), ignore_errors=True)
        if self._tip() is None:
            if repo.head.is_valid():
                # An existing repository on another branch: start ours from its HEAD.
                repo.git.update_ref(self._ref, repo.head.commit.hexsha, _ZERO_OID)
                repaired.append(f"created branch {self.branch} at HEAD")
            else:
                self.commit(
                    {README_PATH: _README},
                    message="Start the PAS workflow repository",
                    author=self._committer,
                )
        if repo.head.is_detached or repo.head.reference.path != self._ref:
            # `git checkout <tag>` (the spec's rollback) leaves HEAD detached; put it back.
            repo.git.symbolic_ref("HEAD", self._ref)
            self._sync_worktree()
            repaired.append(f"HEAD was not on {self.branch}; moved it back")
        for tag in repo.git.tag("--list", "--no-merged", self._ref).split():
            if _VERSION_TAG.match(tag):
                repo.git.tag("-d", tag)
                repaired.append(f"deleted tag {tag} of an interrupted write")
        if repo.is_dirty(index=True, working_tree=True, untracked_files=False):
            self._sync_worktree()
            repaired.append("reset a working tree that did not match the branch")
        return repaired

    def close(self) -> None:
        if self._repo_handle is not None:
            self._repo_handle.close()
            self._repo_handle = None

    def _configure(self) -> None:
        with self._repo.config_writer("repository") as config:
            # Tags take the tagger from here; a global signing setting would need a key.
            config.set_value("user", "name", self._committer.name)
            config.set_value("user", "email", self._committer.email)
            config.set_value("tag", "gpgSign", "false")
            config.set_value("commit", "gpgSign", "false")
            # Objects and refs reach the disk before a write is acknowledged (git >= 2.36).
            config.set_value("core", "fsync", "committed")
        if self._remote:
            # The bare URL only: a URL with credentials written by an older version is replaced.
            names = [remote.name for remote in self._repo.remotes]
            if REMOTE_NAME in names:
                self._repo.git.remote("set-url", REMOTE_NAME, self._remote.url)
            else:
                self._repo.git.remote("add", REMOTE_NAME, self._remote.url)

    # -- reads --------------------------------------------------------------------------------

    def tip(self) -> str:
        tip = self._tip()
        assert tip is not None
        return tip

    def _tip(self) -> str | None:
        try:
            return str(self._repo.git.rev_parse("--verify", "--quiet", self._ref)) or None
        except GitCommandError:
            return None

    def tagged_versions(self) -> list[TaggedVersion]:
        """Every version tag on the branch, read in one ``git for-each-ref``."""
        output = self._repo.git.for_each_ref(
            "--format=" + "%00".join(_TAG_FIELDS) + "%00",
            "refs/tags",
            strip_newline_in_stdout=False,
        )
        fields = output.split("\0")
        found: list[TaggedVersion] = []
        width = len(_TAG_FIELDS)
        for start in range(0, len(fields) - width + 1, width):
            name, kind, commit, author, email, stamp, contents = fields[start : start + width]
            name = name.lstrip("\n")
            match = _VERSION_TAG.match(name)
            if match is None or kind != "tag" or not commit:
                continue
            message, trailers = split_message(contents)
            workflow_id, version = match["workflow"], int(match["version"])
            if trailers.get(TRAILER_WORKFLOW) != workflow_id or trailers.get(
                TRAILER_VERSION
            ) != str(version):
                logger.warning("ignoring a tag the version manager did not write", tag=name)
                continue
            restores = trailers.get(TRAILER_RESTORES)
            found.append(
                TaggedVersion(
                    workflow_id=workflow_id,
                    version=version,
                    tag=name,
                    commit=commit,
                    author=Identity(author, email.strip("<>")),
                    created_at=datetime.fromtimestamp(int(stamp), UTC),
                    message=message,
                    restored_from=int(restores) if restores else None,
                )
            )
        return found

    def highest_version_tags(self) -> dict[str, int]:
        """The highest ``N`` of the ``<id>-v<N>`` tags of each workflow, including tags that
        ``tagged_versions`` passes over: a new version must take a number no tag holds yet."""
        names = self._repo.git.for_each_ref("--format=%(refname:strip=2)", "refs/tags")
        highest: dict[str, int] = {}
        for name in names.splitlines():
            match = _VERSION_TAG.match(name)
            if match is not None:
                workflow_id, version = match["workflow"], int(match["version"])
                highest[workflow_id] = max(highest.get(workflow_id, 0), version)
        return highest

    def read(self, commit: str, path: str) -> bytes:
        item = self._repo.commit(commit).tree / path
        assert isinstance(item, Blob)
        return bytes(item.data_stream.read())

    def files(self, commit: str, folder: str) -> dict[str, bytes]:
        """The files directly in ``folder`` at ``commit``, by name."""
        tree = self._repo.commit(commit).tree
        try:
            sub = tree / folder
        except KeyError:
            return {}
        assert isinstance(sub, Tree)
        return {blob.name: bytes(blob.data_stream.read()) for blob in sub.blobs}

    def last_commit_with(self, path: str, trailers: Mapping[str, str]) -> FoundCommit | None:
        """The newest commit on the branch that changed ``path`` and carries every one of
        ``trailers``; ``None`` if none does."""
        for commit in self._repo.iter_commits(self._ref, paths=path):
            _, found = split_message(str(commit.message))
            if all(found.get(key) == value for key, value in trailers.items()):
                return FoundCommit(
                    commit=commit.hexsha,
                    parent=commit.parents[0].hexsha if commit.parents else None,
                    committed_at=commit.committed_datetime.astimezone(UTC),
                )
        return None

    def diff(self, old: str, new: str, path: str, old_label: str, new_label: str) -> str:
        text: str = self._repo.git.diff(
            "--no-color",
            "--no-ext-diff",
            f"--src-prefix={old_label}/",
            f"--dst-prefix={new_label}/",
            old,
            new,
            "--",
            path,
            strip_newline_in_stdout=False,
        )
        return text

    # -- writes -------------------------------------------------------------------------------

    def commit(
        self,
        changes: Mapping[str, bytes],
        *,
        message: str,
        author: Identity,
        tag: TagRequest | None = None,
    ) -> CommitResult:
        """Commit ``changes`` (path -> content) on the branch, tagged if asked: all or nothing.

        Raises ``RepositoryWriteFailed`` with the branch, tags and working tree as they were.
        """
        attributes: dict[str, str | int] = {"pas.git.files": len(changes), "pas.git.ref": self._ref}
        if tag is not None:
            attributes["pas.git.tag"] = tag.name
        with pas_span("git commit", attributes=attributes):
            return self._commit(changes, message=message, author=author, tag=tag)

    def _commit(
        self,
        changes: Mapping[str, bytes],
        *,
        message: str,
        author: Identity,
        tag: TagRequest | None,
    ) -> CommitResult:
        git = self._repo.git
        parent = self._tip()
        when = datetime.now(UTC).replace(microsecond=0)
        env = self._identity_env(author, when)
        staging = Path(tempfile.mkdtemp(prefix="write-", dir=self._staging_root()))
        env["GIT_INDEX_FILE"] = str(staging / "index")
        tag_created = False
        try:
            git.read_tree(parent or "--empty", env=env)
            paths = list(changes)
            files = []
            for number, path in enumerate(paths):
                file = staging / f"blob-{number}"
                file.write_bytes(changes[path])
                files.append(str(file))
            blobs = git.hash_object("-w", "--no-filters", "--", *files, env=env).split()
            entries = [f"100644,{blob},{path}" for blob, path in zip(blobs, paths, strict=True)]
            git.update_index("--add", *[a for e in entries for a in ("--cacheinfo", e)], env=env)
            tree = git.write_tree(env=env)
            commit = git.commit_tree(
                tree, *(["-p", parent] if parent else []), "-m", message, env=env
            )
            if tag is not None:
                git.tag("-a", "-m", tag.message, tag.name, commit, env=env)
                tag_created = True
            # Compare-and-swap: fails if anything else moved the branch meanwhile.
            git.update_ref(
                "-m",
                f"pas: {message.splitlines()[0][:200]}",
                self._ref,
                commit,
                parent or _ZERO_OID,
                env=env,
            )
        except BaseException as exc:
            # Whatever failed (git, the disk, a signal), the branch has not moved: undo the tag.
            if tag_created and tag is not None:
                self._delete_tag(tag.name)
            if isinstance(exc, GitCommandError):
                raise RepositoryWriteFailed(
                    f"git refused the write ({_git_failure(exc)}); the repository is unchanged"
                ) from exc
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._sync_worktree()
        return CommitResult(commit=commit, committed_at=when)

    def _identity_env(self, author: Identity, when: datetime) -> dict[str, str]:
        stamp = f"@{int(when.timestamp())} +0000"
        return {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": self._committer.name,
            "GIT_COMMITTER_EMAIL": self._committer.email,
            "GIT_COMMITTER_DATE": stamp,
        }

    def _delete_tag(self, name: str) -> None:
        try:
            self._repo.git.tag("-d", name)
        except GitCommandError as exc:
            # The next start deletes tags that are not on the branch.
            logger.error(  # noqa: TRY400  (git's stderr says it all; no traceback)
                "could not delete the tag of a failed write", tag=name, error=str(exc)
            )

    def _sync_worktree(self) -> None:
        """Make the index and working tree match the branch (they are views of it)."""
        try:
            self._repo.git.read_tree("--reset", "-u", "HEAD")
        except GitCommandError as exc:
            logger.warning(
                "working tree not updated; it is repaired at the next start",
                error=_git_failure(exc),
            )

    def _staging_root(self) -> Path:
        root = Path(self._repo.git_dir) / _STAGING_DIR
        root.mkdir(exist_ok=True)
        return root


def _git_failure(exc: GitCommandError) -> str:
    stderr = str(exc.stderr or "").strip().replace("stderr: ", "").strip("'\n ")
    command = exc.command[1] if isinstance(exc.command, list) and len(exc.command) > 1 else "git"
    return f"git {command}: {stderr or exc.status}"
