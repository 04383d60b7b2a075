"""GGUF weights the CPU can multiply a batch against: Q4_1 and Q5_1 files converted to Q8_0
once, by llama.cpp's own quantizer, and kept in a cache directory.

For a batch of rows (a prompt being read, or several answers decoded together) llama.cpp's
CPU backend multiplies Q8_0, Q4_0 and Q5_0 weights in one tiled kernel (llamafile's sgemm).
Q4_1 and Q5_1 have none: each row is multiplied on its own, so a pass of four answers costs
nearly four passes of one and a prompt is read slowly. SmolLM2-135M-Instruct ships as Q4_1.
Q8_0 keeps the same blocks of 32 weights with eight bits each (no weight moves by more than
1/254 of its block's largest magnitude); Q4_0 would be faster still but rounds each weight a
second time to four bits. docs/benchmarks.md has the speeds and docs/quality.md the answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import re
import time
from pathlib import Path

import llama_cpp
import structlog

logger = structlog.get_logger("pas.llm.weights")

# general.file_type values (llama.cpp's llama_ftype) of files whose batches go row by row.
ROW_BY_ROW_FILE_TYPES = {
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1: "Q4_1",
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1: "Q5_1",
}


def batchable_weights(path: Path, cache_dir: Path, *, threads: int | None = None) -> Path:
    """``path`` itself, or its Q8_0 copy in ``cache_dir`` (made now if missing) when its
    weights are Q4_1 or Q5_1. Where the copy cannot be made the file is used as it is, with a
    warning: slower batches, the same service."""
    converted = cache_dir / _converted_name(path)
    _remove_abandoned_partials(converted)
    _remove_superseded_copies(converted)
    if converted.is_file():
        return converted
    file_type = _file_type(path)
    if file_type not in ROW_BY_ROW_FILE_TYPES:
        return path
    started = time.perf_counter()
    partial = _partial_path(converted, os.getpid())
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        quantize(path, partial, threads=threads)
        # Atomic: services starting together each write their own partial file.
        os.replace(partial, converted)
    except (OSError, WeightConversionFailed) as exc:
        with contextlib.suppress(OSError):  # nothing written, or a cache that is no directory
            partial.unlink()
        logger.warning(
            "weights kept as they are: batches and prompts decode row by row",
            path=str(path),
            weights=ROW_BY_ROW_FILE_TYPES[file_type],
            cache_dir=str(cache_dir),
            error=str(exc),
        )
        return path
    logger.info(
        "weights converted for batched decoding",
        source=str(path),
        weights=f"{ROW_BY_ROW_FILE_TYPES[file_type]} -> Q8_0",
        path=str(converted),
        seconds=round(time.perf_counter() - started, 2),
    )
    return converted


class WeightConversionFailed(Exception):
    """llama.cpp's quantizer returned an error (its reason is on stderr)."""


def _converted_name(path: Path) -> str:
    """``SmolLM2-135M-Instruct.<place>.<version>.Q8_0.gguf``: ``place`` is the source file's
    path, ``version`` its size and modification time, so a replaced file is converted again
    and its older copies are known by their place (``_remove_superseded_copies``)."""
    stat = path.stat()
    place = _short_hash(str(path.resolve()))
    version = _short_hash(f"{stat.st_size}\0{stat.st_mtime_ns}")
    return f"{path.name.split('.')[0]}.{place}.{version}.Q8_0.gguf"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _remove_superseded_copies(converted: Path) -> None:
    """Delete the copies made from earlier versions of ``converted``'s source file (the same
    place, another version): each is as large as the copy, and nothing will load it again (a
    service that has it loaded keeps its pages). Copies of other source files are kept.

    Copies named before the name held the place apart (``<stem>.<16 hex digits>.Q8_0.gguf``)
    are deleted too: no service of this version loads them."""
    stem, place = converted.name.split(".")[:2]
    unplaced = re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{16}}\.Q8_0\.gguf")
    with contextlib.suppress(OSError):  # no cache yet, or one that is no directory
        for copy in converted.parent.iterdir():
            name = copy.name
            earlier = name.startswith(f"{stem}.{place}.") and name.endswith(".Q8_0.gguf")
            if (earlier and name != converted.name) or unplaced.fullmatch(name):
                copy.unlink(missing_ok=True)
                logger.info("removed the copy of an earlier source file", path=str(copy))


def _partial_path(converted: Path, pid: int | str) -> Path:
    """Where process ``pid`` writes ``converted`` before renaming it (``"*"``: any process)."""
    return converted.with_name(f".{converted.name}.{pid}.partial")


def _remove_abandoned_partials(converted: Path) -> None:
    """Delete the partial copies of ``converted`` whose writer is gone (a service killed while
    it converted leaves one, as large as the copy); those of live processes are theirs."""
    prefix, suffix = _partial_path(converted, "*").name.split("*")
    with contextlib.suppress(OSError):  # no cache yet, or one that is no directory
        for partial in converted.parent.glob(f"{prefix}*{suffix}"):
            pid = partial.name.removeprefix(prefix).removesuffix(suffix)
            if pid.isdigit() and not _process_exists(int(pid)):
                partial.unlink(missing_ok=True)
                logger.info("removed an abandoned partial conversion", path=str(partial))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _file_type(path: Path) -> int | None:
    """The file's ``general.file_type``, read with its vocabulary only (no weights loaded)."""
    _quiet_llama_cpp()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None
    try:
        value = ctypes.create_string_buffer(16)
        length = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", value, 16)
        return int(value.value) if length > 0 and value.value.isdigit() else None
    finally:
        llama_cpp.llama_model_free(model)


def quantize(
    source: Path,
    target: Path,
    *,
    file_type: int = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    threads: int | None = None,
) -> None:
    """Write ``source``'s weights to ``target`` as ``file_type`` (a llama_ftype), rounding
    quantized weights again where the type differs. Raises :class:`WeightConversionFailed`."""
    _quiet_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    params.allow_requantize = True
    params.nthread = threads or 0  # 0: every core
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise WeightConversionFailed(f"llama.cpp could not convert {source} (type {file_type})")


def _quiet_llama_cpp() -> None:
    # llama-cpp-python prints every llama.cpp log line to stderr until a Llama object is
    # made with verbose=False; the loader's and quantizer's lines would drown the service's.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
