"""Structural diff of two JSON documents: added, removed and modified paths (JSON Pointers)."""

from __future__ import annotations

from typing import Any

from libs.common.schemas.versioning import PathChange, PathValue


def pointer(parent: str, key: str | int) -> str:
    """Append one reference token to a JSON Pointer (RFC 6901 escapes ``~`` and ``/``)."""
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{parent}/{token}"


class JSONDiff:
    def __init__(self) -> None:
        self.added: list[PathValue] = []
        self.removed: list[PathValue] = []
        self.modified: list[PathChange] = []


def diff_json(old: Any, new: Any) -> JSONDiff:
    """Walk both documents: keys of objects and positions of arrays are matched; a value that
    changed type, or any other leaf that differs, is one ``modified`` entry at its path."""
    result = JSONDiff()
    _walk(old, new, "", result)
    return result


def _walk(old: Any, new: Any, path: str, result: JSONDiff) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                result.removed.append(PathValue(path=pointer(path, key), value=old[key]))
        for key in new:
            if key not in old:
                result.added.append(PathValue(path=pointer(path, key), value=new[key]))
            else:
                _walk(old[key], new[key], pointer(path, key), result)
        return
    if isinstance(old, list) and isinstance(new, list):
        for index in range(min(len(old), len(new))):
            _walk(old[index], new[index], pointer(path, index), result)
        for index in range(len(new), len(old)):
            result.removed.append(PathValue(path=pointer(path, index), value=old[index]))
        for index in range(len(old), len(new)):
            result.added.append(PathValue(path=pointer(path, index), value=new[index]))
        return
    if _json_type(old) != _json_type(new) or old != new:
        result.modified.append(PathChange(path=path, old=old, new=new))


def _json_type(value: Any) -> str:
    """JSON's 1 and 1.0 are the same number, but Python's True == 1 must not hide a change."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return type(value).__name__
