"""The version manager's path parameters, validated like the wire types they carry."""

from __future__ import annotations

from typing import Annotated

from libs.common.kit.parameters import constrained
from libs.common.schemas.versioning import AliasName, ExperimentId, Version, WorkflowId

WorkflowIdParameter = Annotated[WorkflowId, constrained(WorkflowId, "The workflow id.")]
VersionParameter = Annotated[Version, constrained(Version, "A version number (1, 2, ...).")]
AliasParameter = Annotated[
    AliasName, constrained(AliasName, "An alias; `latest` is always the newest version.")
]
ExperimentIdParameter = Annotated[ExperimentId, constrained(ExperimentId, "The experiment id.")]
