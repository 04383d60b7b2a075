"""The prompt store kept across restarts: written to a file when the service stops (and every
few minutes while it answers, so a service killed keeps what it had then), read back when it
starts, so the agents' system prompts and conversations are in the cache from the
first request after a restart or a deploy (llama.cpp's server saves a slot only when asked
to, and Ollama and vLLM keep nothing).

A stored prompt is llama.cpp's cells of its sequence, which only the same weights, read by
the same llama.cpp with the same context and attention settings, put back as a fresh read
computes them. The file says all of that (``identity``), and a file that says anything else
is left unread: an answer from a restored prompt is, to the bit, the answer from reading it
(tests/llm/test_prompt_file.py). It is written to a temporary file then renamed, so a crash
mid-write leaves the file before it (and a temporary file, removed at a later start); a file
that cannot be read is logged and passed over (it is a cache: the service starts without it)."""

from __future__ import annotations

import ctypes
import glob
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, BinaryIO, Final

import llama_cpp
import msgspec
import structlog

from services.llm.backends.prompt_cache import KeptPrompt, PromptStore, StoredPrompt

logger = structlog.get_logger("pas.llm.prompt_file")

MAGIC: Final = b"PAS prompts 1\n"
"""A prompt file starts with this, then its header's length (8 bytes, little-endian), the
header (msgpack), and each prompt's state in the header's order: written from and read into
llama.cpp's buffers, with no copy of the whole store on the way (it may be hundreds of MiB
in a pod whose memory limit is little more than the service's)."""

Identity = dict[str, str | int | bool]
"""What a stored prompt's cells were computed with (``identity``)."""


class _SavedPrompt(msgspec.Struct, array_like=True):
    tokens: list[int]
    classes: bytes  # each token's row class (``prompt_cache.row_class``)
    # The length of its ``llama_state_seq_get_data``, after the header.
    state_bytes: Annotated[int, msgspec.Meta(ge=0)]


class _Header(msgspec.Struct):
    identity: Identity
    prompts: list[_SavedPrompt]  # least recently used first


def identity(weights: Path, context: Identity) -> Identity:
    """The weights file (by name, size and modification time: a file replaced or converted
    again is another), the llama.cpp build, and ``context``: the engine's settings that
    shape its cells (``BatchEngine.state_settings``)."""
    stat = weights.stat()
    return {
        "weights": weights.name,
        "weights_bytes": stat.st_size,
        "weights_modified_ns": stat.st_mtime_ns,
        "llama_cpp": llama_cpp.__version__,
        **context,
    }


def save_prompts(stored: Sequence[StoredPrompt], path: Path, made_with: Identity) -> None:
    """Write ``stored`` (the least recently used first) to ``path``."""
    header = msgspec.msgpack.encode(
        _Header(
            made_with,
            [_SavedPrompt(s.kept.tokens, bytes(s.kept.classes), len(s.state)) for s in stored],
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: replicas of one service may share the directory. The file holds the
    # prompts' tokens, so their text: mkstemp makes it readable by this user only.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(MAGIC)
            out.write(len(header).to_bytes(8, "little"))
            out.write(header)
            for prompt in stored:
                out.write(memoryview(prompt.state))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_unfinished(path: Path, older_than_s: float = 3600) -> int:
    """Remove the temporary files of writes to ``path`` that never finished (a service killed
    mid-write) and are older than ``older_than_s``: a replica sharing the directory may be
    writing one now. How many were removed."""
    removed = 0
    cutoff = time.time() - older_than_s
    for temporary in path.parent.glob(f".{glob.escape(path.name)}.*"):
        try:
            if temporary.stat().st_mtime < cutoff:
                temporary.unlink()
                removed += 1
        except FileNotFoundError:  # another replica removed it first
            continue
    return removed


def load_prompts(store: PromptStore, path: Path, made_with: Identity) -> int:
    """Put the prompts saved in ``path`` into ``store`` (within its capacity, the most
    recently used kept); how many were read. None from a file that is missing, unreadable or
    made with anything else than ``made_with``."""
    try:
        with path.open("rb") as saved:
            header = _read_header(saved)
            if header is None:
                logger.warning("prompt file unreadable; starting without it", path=str(path))
                return 0
            if header.identity != made_with:
                logger.info(
                    "prompt file made with other weights or settings; left unread",
                    path=str(path),
                    differs=sorted(
                        name
                        for name in made_with.keys() | header.identity.keys()
                        if made_with.get(name) != header.identity.get(name)
                    ),
                )
                return 0
            # Only the most recently used that fit in the store are read (the rest it drops).
            sizes = [prompt.state_bytes for prompt in header.prompts]
            first, fitting = len(sizes), 0
            while first and fitting + sizes[first - 1] <= store.capacity_bytes:
                first -= 1
                fitting += sizes[first]
            saved.seek(sum(sizes[:first]), os.SEEK_CUR)
            prompts = []
            for prompt in header.prompts[first:]:
                state = (ctypes.c_uint8 * prompt.state_bytes)()
                if saved.readinto(state) != prompt.state_bytes:
                    logger.warning("prompt file cut short; starting without it", path=str(path))
                    return 0
                if len(prompt.tokens) == len(prompt.classes):
                    prompts.append(StoredPrompt(KeptPrompt(prompt.tokens, prompt.classes), state))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        logger.warning(
            "prompt file unreadable; starting without it", path=str(path), error=str(exc)
        )
        return 0
    for stored in prompts:
        store.add(stored)
    return len(prompts)


def _read_header(saved: BinaryIO) -> _Header | None:
    if saved.read(len(MAGIC)) != MAGIC:
        return None
    length = int.from_bytes(saved.read(8), "little")
    try:
        return msgspec.msgpack.decode(saved.read(length), type=_Header)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
