"""TLC domain classifier: ``uvicorn services.llm.tlc_classifier_service:app --port 8052``.

Besides the common LLM endpoints it serves ``/classify_domain``, ``/extract_tmd``,
``/validate_domain`` and ``/taxonomy``. Confidences are the model's own token probabilities,
which only the embedded backend exposes, so that is the backend this service runs on.
"""

from __future__ import annotations

from typing import ClassVar, cast

from litestar import Litestar

from libs.common.constants import TLC_CLASSIFIER_PORT
from libs.common.errors import SettingsError
from libs.common.settings import build_or_exit, env_names
from services.llm.backends.base import ChoiceScorer
from services.llm.classifier import TLCClassifier
from services.llm.profiles import TLC_CLASSIFIER
from services.llm.service import build_runtime, create_llm_app
from services.llm.settings import LLMServiceSettings
from services.llm.tlc_routes import TLCController


class TLCSettings(LLMServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "TLC_"
    port: int = TLC_CLASSIFIER_PORT


def create_app(settings: TLCSettings) -> Litestar:
    if settings.backend != "embedded":
        raise SettingsError(
            env_names(TLCSettings, "backend")[0],
            f"{settings.backend!r} cannot report token probabilities; the TLC classifier "
            "needs the embedded backend (any GGUF file via TLC_MODEL_PATH)",
        )
    runtime = build_runtime(settings, TLC_CLASSIFIER)
    # The embedded backend (build_runtime's for "embedded") scores choices.
    scorer = cast(ChoiceScorer, runtime.backend)
    return create_llm_app(
        runtime,
        extra_handlers=[TLCController],
        extra_dependencies={"classifier": TLCClassifier(scorer)},
    )


app = build_or_exit(create_app, TLCSettings)
