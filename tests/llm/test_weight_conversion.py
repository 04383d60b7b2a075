"""Q4_1 weights converted to Q8_0 once for batched decoding (services/llm/weight_conversion.py),
on the GGUF file PAS ships."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
import structlog

from services.llm import weight_conversion
from services.llm.model_files import packaged_gguf
from services.llm.weight_conversion import batchable_weights


def file_type(path: Path) -> str:
    """The GGUF file's general.file_type, from the fully loaded model's metadata."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    model = llama_cpp.llama_model_load_from_file(
        str(path).encode(), llama_cpp.llama_model_default_params()
    )
    assert model, f"llama.cpp could not load {path}"
    try:
        value = ctypes.create_string_buffer(16)
        llama_cpp.llama_model_meta_val_str(model, b"general.file_type", value, 16)
        return {"3": "Q4_1", "7": "Q8_0"}.get(value.value.decode(), value.value.decode())
    finally:
        llama_cpp.llama_model_free(model)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batchable_weights(packaged_gguf(), tmp_path_factory.mktemp("models"), threads=1)


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The conversion's log lines. Its module logger is replaced by a fresh one made inside the
    capture: once an app in this worker has configured logging (which caches a logger on its
    first use), the module's own logger keeps writing JSON to stdout, out of the capture's reach."""
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(weight_conversion, "logger", structlog.get_logger("pas.llm.weights"))
        yield logs


def test_the_shipped_q4_1_file_is_converted_to_q8_0_in_the_cache(converted: Path) -> None:
    assert file_type(packaged_gguf()) == "Q4_1"
    assert converted.parent.name.startswith("models")
    assert converted.name.startswith("SmolLM2-135M-Instruct.")
    assert converted.name.endswith(".Q8_0.gguf")
    assert file_type(converted) == "Q8_0"
    assert not [p for p in converted.parent.iterdir() if p.name.endswith(".partial")]


def test_a_converted_file_is_used_again_not_made_again(
    converted: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    made = converted.stat().st_mtime_ns

    again = batchable_weights(packaged_gguf(), converted.parent)

    assert again == converted
    assert again.stat().st_mtime_ns == made
    assert captured_logs == []


def test_a_file_of_batchable_weights_is_loaded_as_it_is(converted: Path, tmp_path: Path) -> None:
    assert batchable_weights(converted, tmp_path) == converted
    assert list(tmp_path.iterdir()) == []


def test_a_changed_source_file_is_converted_again_and_its_old_copy_removed(
    converted: Path, tmp_path: Path
) -> None:
    """A copy of another source file with the same name (another place) is kept; one named
    as before the name held the place apart is removed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    unplaced = cache / "SmolLM2-135M-Instruct.66b4b57882767144.Q8_0.gguf"
    unplaced.write_bytes(b"GGUF")
    elsewhere = tmp_path / "elsewhere" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    elsewhere.parent.mkdir()
    elsewhere.symlink_to(packaged_gguf())  # a link's place is the file it names
    other = batchable_weights(elsewhere, cache, threads=1)
    source = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source.write_bytes(packaged_gguf().read_bytes())
    first = batchable_weights(source, cache, threads=1)
    # The same bytes under a new modification time: a new version of the source file.
    os.utime(source, ns=(0, 1_000_000_000))

    second = batchable_weights(source, cache, threads=1)

    assert len({other, first, second}) == 3
    assert {p.name for p in cache.iterdir()} == {other.name, second.name}


def test_an_unwritable_cache_keeps_the_shipped_weights_and_says_why(
    tmp_path: Path, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")

    assert batchable_weights(packaged_gguf(), blocked / "models") == packaged_gguf()
    # The capture takes every thread's events: another test's engine may log meanwhile.
    [warning] = [log for log in captured_logs if "weights" in log]
    assert warning["log_level"] == "warning"
    assert warning["weights"] == "Q4_1"
    assert "decode row by row" in str(warning["event"])
    assert "error" in warning


def test_a_partial_copy_whose_writer_died_is_removed_and_a_live_one_kept(
    converted: Path, tmp_path: Path
) -> None:
    """A service killed mid-conversion leaves its partial file (the size of the copy); the next
    start removes it, but not the one a service converting right now is writing."""
    cache = tmp_path / "cache"
    cache.mkdir()
    name = converted.name
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    abandoned = cache / f".{name}.{int(dead.stdout)}.partial"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        in_progress = cache / f".{name}.{alive.pid}.partial"
        for partial in (abandoned, in_progress):
            partial.write_bytes(b"GGUF")

        found = batchable_weights(packaged_gguf(), cache, threads=1)
        alive.kill()

    assert found.name == name
    assert not abandoned.exists()
    assert in_progress.exists()
