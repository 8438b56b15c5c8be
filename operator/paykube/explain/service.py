"""The `Explainer` facade: what the operator calls to fill `status.error.explanation`.

Reconciliation never waits on a model:

    text = explainer.explain_now(exc)              # catalog only: instant, no network
    ... write status.error with explanation=text ...
    if text is None:
        explainer.explain_in_background(exc, patch_explanation)   # later status patch

`explain_later` is the awaitable form (catalog, caches, then the model with its timeout);
it returns None on timeout or error, having logged one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from paykube.api.types import ErrorInfo
from paykube.errors import ProviderError
from paykube.explain.catalog import CATALOG, Catalog
from paykube.explain.details import ErrorDetails
from paykube.explain.llm import ExplanationStore, ModelExplainer
from paykube.settings import SecretStr

log = logging.getLogger(__name__)

Explainable = ErrorInfo | ProviderError | ErrorDetails


class Explainer:
    def __init__(self, *, catalog: Catalog = CATALOG, model: ModelExplainer | None = None,
                 provider: str = "stripe") -> None:
        self._catalog = catalog
        self._model = model
        self._provider = provider
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def model_configured(self) -> bool:
        return self._model is not None

    def details(self, error: Explainable, *, param: str | None = None,
                error_type: str | None = None) -> ErrorDetails:
        return ErrorDetails.of(error, provider=self._provider, param=param,
                               error_type=error_type)

    def explain_now(self, error: Explainable, *, param: str | None = None,
                    error_type: str | None = None) -> str | None:
        """The catalog's explanation (or one the model gave earlier, from memory); never
        does I/O."""
        details = self.details(error, param=param, error_type=error_type)
        found = self._catalog.lookup(details)
        if found is None and self._model is not None and details.is_provider_error:
            found = self._model.cached(details)
        return found

    def needs_model(self, error: Explainable, *, param: str | None = None,
                    error_type: str | None = None) -> bool:
        """Whether `explain_later` could add something that `explain_now` does not have."""
        details = self.details(error, param=param, error_type=error_type)
        return (self._model is not None and details.is_provider_error
                and self.explain_now(details) is None)

    async def explain_later(self, error: Explainable, *, param: str | None = None,
                            error_type: str | None = None) -> str | None:
        details = self.details(error, param=param, error_type=error_type)
        found = self._catalog.lookup(details)
        if found is not None or self._model is None or not details.is_provider_error:
            return found
        try:
            return await self._model.explain(details)
        except Exception as exc:  # ModelExplainer does not raise; belt and braces
            log.warning("explaining %s error %s failed: %s", details.provider,
                        details.code or details.error_type, type(exc).__name__)
            return None

    def explain_in_background(
        self, error: Explainable, on_explained: Callable[[str], Awaitable[object]], *,
        param: str | None = None, error_type: str | None = None,
    ) -> asyncio.Task[None] | None:
        """Run `explain_later` in a task and hand a found explanation to `on_explained`
        (for example a status patch that sets `status.error.explanation` if the error is
        still the same). Returns None when there is nothing the model could add."""
        details = self.details(error, param=param, error_type=error_type)
        if not self.needs_model(details):
            return None

        async def run() -> None:
            text = await self.explain_later(details)
            if text is None:
                return
            try:
                await on_explained(text)
            except Exception as exc:  # a background task has nobody to raise to
                log.warning("could not record the explanation of %s error %s: %s",
                            details.provider, details.code or details.error_type,
                            type(exc).__name__)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._model is not None:
            await self._model.aclose()


def build_explainer(*, base_url: str | None = None, model: str | None = None,
                    api_key: SecretStr | Callable[[], SecretStr] | None = None,
                    timeout: float = 3.0,
                    store: ExplanationStore | None = None,
                    provider: str = "stripe", failure_backoff: float = 60.0) -> Explainer:
    """Catalog only unless both `base_url` and `model` are set."""
    if not base_url or not model:
        return Explainer(provider=provider)
    explainer = ModelExplainer(base_url, model, api_key or SecretStr(""), timeout=timeout,
                               store=store, failure_backoff=failure_backoff)
    return Explainer(model=explainer, provider=provider)
