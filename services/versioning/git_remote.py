"""The git remote the version manager pushes to: its URL apart from its credentials, and the push.

A remote's credentials never reach the disk: ``.git/config`` holds the bare URL (written by
``WorkflowRepository.open``), and each push hands the user name and password to git through a
credential helper that reads them from the push's own environment (see :class:`RemoteAccess`).
When pushes happen, and what happens when one fails, is ``remote_push.py``'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from git import Repo

from libs.common.telemetry import pas_span

REMOTE_NAME = "origin"

# Git runs this for "get" (and "store"/"erase", ignored) with the push's environment; the
# command line holds no secret, so `ps` shows none either.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    'test -n "$PAS_GIT_USERNAME" && echo "username=$PAS_GIT_USERNAME"; '
    'echo "password=$PAS_GIT_PASSWORD"; }; f'
)
_CREDENTIAL_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class RemoteAccess:
    """A git remote split into the URL git's config may hold and the credentials it may not.

    ``https://user:secret@host/repo.git`` (or ``https://token@host/...``) becomes the URL
    ``https://host/repo.git`` plus the user name and password, given to git per push by a
    credential helper. A password in another scheme's URL (ssh uses keys) is dropped; paths and
    ``file://`` URLs stay as they are.
    """

    url: str
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, remote: str) -> RemoteAccess:
        parts = urlsplit(remote)
        if not parts.scheme or "@" not in parts.netloc:
            return cls(remote)
        userinfo, _at, host = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if parts.scheme.lower() in _CREDENTIAL_SCHEMES:
            return cls(
                urlunsplit(parts._replace(netloc=host)),
                username=unquote(user) or None,
                password=unquote(password) if colon else None,
            )
        return cls(urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host)))

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.password is not None

    def git_config(self) -> list[str]:
        """``-c`` values for one git command: no helper but ours, so that a helper configured
        for the user (``store``) never saves these credentials."""
        if not self.has_credentials:
            return []
        return ["credential.helper=", f"credential.helper={_CREDENTIAL_HELPER}"]

    def git_environment(self) -> dict[str, str]:
        environment = {"GIT_TERMINAL_PROMPT": "0"}
        if self.has_credentials:
            environment["PAS_GIT_USERNAME"] = self.username or ""
            environment["PAS_GIT_PASSWORD"] = self.password or ""
        return environment


def push(
    path: Path, branch: str, access: RemoteAccess | None = None, *, timeout_s: float = 120.0
) -> None:
    """Push the branch and the version tags on it to the remote (its own ``Repo``, so that it
    can run in a thread of its own next to the catalog's), with ``access``'s credentials."""
    access = access or RemoteAccess("")
    with pas_span("git push", attributes={"pas.git.branch": branch}), Repo(path) as repo:
        repo.git(c=access.git_config()).push(
            "--porcelain",
            "--follow-tags",
            REMOTE_NAME,
            f"refs/heads/{branch}:refs/heads/{branch}",
            env=access.git_environment(),
            kill_after_timeout=timeout_s,
        )
