"""Settings come from the environment and .env, and a bad value names its variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from libs.common.errors import SettingsError
from libs.common.settings import load_settings
from services.langgraph_runner.settings import RunnerSettings
from services.registry.settings import RegistrySettings
from services.versioning.settings import VersioningSettings
from tests.support.processes import REPO_ROOT


def test_variables_override_defaults_and_convert_types() -> None:
    settings = load_settings(
        RegistrySettings,
        {"REGISTRY_PORT": "7000", "REGISTRY_DEFAULT_TTL_S": "12.5", "LOG_LEVEL": "DEBUG"},
        env_file="",
    )

    assert settings.port == 7000
    assert settings.default_ttl_s == 12.5
    assert settings.log_level == "DEBUG"
    assert settings.token is None


def test_service_variable_wins_over_the_shared_one() -> None:
    settings = load_settings(
        RegistrySettings, {"REGISTRY_LOG_LEVEL": "ERROR", "LOG_LEVEL": "DEBUG"}, env_file=""
    )
    assert settings.log_level == "ERROR"


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REGISTRY_TOKEN=from-file\nREGISTRY_PORT=7001\n")

    settings = load_settings(RegistrySettings, {"REGISTRY_PORT": "7002"}, env_file=env_file)

    assert settings.token == "from-file"
    assert settings.port == 7002


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("REGISTRY_PORT", "six-one-two-one", "Expected `int`"),
        ("REGISTRY_REAP_INTERVAL_S", "0", "Expected `float` > 0"),
        ("REGISTRY_DATABASE_URL", "mysql://db", "matching regex"),
        ("REGISTRY_LOG_FORMAT", "xml", "Invalid enum value 'xml'"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(RegistrySettings, {variable: value}, env_file="")

    assert caught.value.variable == variable
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VERSIONING_COMMITTER_NAME", "."), ("VERSIONING_COMMITTER_EMAIL", "versioning@pas.")],
)
def test_a_committer_git_would_refuse_or_rename_is_named_at_start(
    variable: str, value: str
) -> None:
    """Else the version manager started, and its first write failed (git refuses a name of
    punctuation alone) or recorded another identity (git strips it from an email's ends)."""
    with pytest.raises(SettingsError) as caught:
        load_settings(VersioningSettings, {variable: value}, env_file="")

    assert caught.value.variable == variable


def test_a_runner_capability_on_the_ollama_api_is_named_at_start() -> None:
    """The Ollama API picks a model by name: the capability was left unused without a word."""
    env = {"RUNNER_LLM_API": "ollama", "RUNNER_LLM_CAPABILITY": "summarize"}
    with pytest.raises(SettingsError) as caught:
        load_settings(RunnerSettings, env, env_file="")
    routed = load_settings(RunnerSettings, {**env, "RUNNER_LLM_API": "openai"}, env_file="")

    assert caught.value.variable == "RUNNER_LLM_CAPABILITY"
    assert "RUNNER_LLM_API=openai" in caught.value.problem
    assert routed.llm_capability == "summarize"


def test_secrets_are_masked_when_settings_are_logged() -> None:
    settings = load_settings(RegistrySettings, {"REGISTRY_TOKEN": "hunter2"}, env_file="")
    assert settings.redacted()["token"] == "***"
    assert "hunter2" not in str(settings.redacted())


def test_passwords_inside_urls_are_masked_but_counts_named_like_secrets_are_not() -> None:
    settings = load_settings(
        RegistrySettings,
        {"REGISTRY_DATABASE_URL": "postgresql://pas:hunter2@db.internal:5432/pas"},
        env_file="",
    )
    assert settings.redacted()["database_url"] == "postgresql://pas:***@db.internal:5432/pas"
    runner = load_settings(RunnerSettings, {"RUNNER_LLM_MAX_TOKENS": "77"}, env_file="")
    assert runner.redacted()["llm_max_tokens"] == 77


def test_a_bad_value_stops_the_service_with_a_one_line_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "services.registry.registry_service:app", "--port", "0"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PAS_ENV_FILE": "", "REGISTRY_DEFAULT_TTL_S": "soon"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "configuration error: REGISTRY_DEFAULT_TTL_S: Expected `float`" in result.stderr
