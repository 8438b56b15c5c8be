"""Plain-words explanations of provider errors for `status.error.explanation`.

Adapter layer: imports paykube.api, paykube.errors and paykube.settings only.
"""

from paykube.explain.catalog import CATALOG, Catalog
from paykube.explain.details import ErrorDetails, normalize_param
from paykube.explain.llm import (
    ExplanationKey,
    ExplanationStore,
    MemoryExplanationStore,
    ModelExplainer,
)
from paykube.explain.redact import redact
from paykube.explain.service import Explainer, build_explainer

__all__ = [
    "CATALOG",
    "Catalog",
    "ErrorDetails",
    "Explainer",
    "ExplanationKey",
    "ExplanationStore",
    "MemoryExplanationStore",
    "ModelExplainer",
    "build_explainer",
    "normalize_param",
    "redact",
]
