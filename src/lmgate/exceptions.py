"""The one exception tree of lmgate.

Every error a call can raise is one of these; provider error bodies, HTTP statuses and httpx
exceptions are mapped to them at one boundary (``providers.base.Provider.error`` and
``_http.map_transport_error``)::

    LmgateError
     ├── APIError                         any error answered by a provider (status_code)
     │    ├── BadRequestError              400 (and other 4xx without a class of their own)
     │    │    ├── ContextWindowExceededError   the prompt does not fit the model
     │    │    ├── ContentPolicyViolationError  the provider's content filter refused the request
     │    │    ├── UnsupportedParamsError       a parameter the provider cannot take
     │    │    └── UnknownModelError            no provider for this model name
     │    ├── AuthenticationError          401
     │    ├── PermissionDeniedError        403
     │    ├── NotFoundError                404
     │    ├── UnprocessableEntityError     422
     │    ├── RateLimitError               429
     │    │    └── RouterRateLimitError         a Router group has no deployment out of cooldown
     │    ├── InternalServerError          500 and other 5xx
     │    └── ServiceUnavailableError      503, 529 (overloaded)
     ├── APIConnectionError               the provider could not be reached or broke the stream
     │    └── Timeout                      no answer in time (status_code 408)
     ├── CallbackError                    a callback raised, re-raised in strict mode
     │  (and the reference's further names, for ``except litellm.X``: InvalidRequestError,
     │   PaymentRequiredError, UnsupportedEndpointError under BadRequestError; BadGatewayError,
     │   APIResponseValidationError > JSONSchemaValidationError, OpenAIError under APIError;
     │   LiteLLMUnknownProvider = UnknownModelError; MockException under APIError)
     └── ConfigError (also a ValueError)  a setting is missing or wrong: names file, key and fix

``BudgetExceededError`` and ``ModelNotMappedError`` stand outside the tree (plain ``Exception``
subclasses), as in the reference; lmgate defines them so that ``except litellm.X`` works.

Each carries ``status_code``, ``message``, ``llm_provider`` and ``model``; the message, the
upstream ``body`` and ``response_headers`` are passed through secret masking before they are
stored (credential headers such as ``set-cookie`` are dropped), so no API key shows in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "LmgateError",
    "APIError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "UnsupportedParamsError",
    "UnknownModelError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "RouterRateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "CallbackError",
    "ConfigError",
    "exception_for_status",
    # the reference's further names (see the section above CallbackError)
    "InvalidRequestError",
    "PaymentRequiredError",
    "UnsupportedEndpointError",
    "BadGatewayError",
    "APIResponseValidationError",
    "JSONSchemaValidationError",
    "OpenAIError",
    "LiteLLMUnknownProvider",
    "BudgetExceededError",
    "MockException",
    "ModelNotMappedError",
]


class LmgateError(Exception):
    """Base of every lmgate error."""

    status_code: int = 500

    def __init__(
        self,
        message: str = "",
        llm_provider: str | None = None,
        model: str | None = None,
        *,
        status_code: int | None = None,
        response_headers: dict[str, str] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        from ._secrets import scrub, scrub_data, upstream_headers

        self.message = scrub(str(message))
        self.llm_provider = llm_provider
        self.model = model
        if status_code is not None:
            self.status_code = status_code
        # an upstream error may quote the key back, in its body or its headers
        self.response_headers = upstream_headers(response_headers)
        self.body = scrub_data(body)
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        prefix = f"lmgate.{type(self).__name__}"
        where = f" ({self.llm_provider})" if self.llm_provider else ""
        return f"{prefix}{where}: {self.message}"

    def __reduce__(self) -> Any:  # keep exceptions picklable across processes
        return (
            _rebuild,
            (type(self), self.message, self.llm_provider, self.model, self.status_code),
        )


def mask_error_secrets(error: LmgateError, secrets: Iterable[str | None]) -> None:
    """Mask one call's ``secrets`` (its key, its ``api_base``'s password) in ``error``'s message,
    body and headers; the pipeline does this before any callback, hook or caller sees the error."""
    from ._secrets import scrub, scrub_data, upstream_headers

    secrets = tuple(s for s in secrets if s)
    if not secrets:
        return
    error.message = scrub(error.message, secrets)
    error.args = (error.message, *error.args[1:])
    error.body = scrub_data(error.body, secrets)
    error.response_headers = upstream_headers(error.response_headers, secrets)


def _rebuild(cls: type[LmgateError], message: str, provider: Any, model: Any, status: int) -> LmgateError:
    return cls(message, provider, model, status_code=status)


class APIError(LmgateError):
    """The provider answered with an error status."""


class BadRequestError(APIError):
    """The request was rejected as malformed (400, or a 4xx without its own class)."""

    status_code = 400


class ContextWindowExceededError(BadRequestError):
    """The prompt and requested output do not fit the model's context window."""


class ContentPolicyViolationError(BadRequestError):
    """The provider's content filter refused the request (a 400 with a content-policy code)."""


class UnsupportedParamsError(BadRequestError):
    """A parameter was given that this provider cannot take (pass ``drop_params=True`` to drop it)."""


class UnknownModelError(BadRequestError):
    """No provider matches the model name; the message lists what is supported."""


class AuthenticationError(APIError):
    """The API key is missing or wrong (401)."""

    status_code = 401


class PermissionDeniedError(APIError):
    """The key may not use this resource (403)."""

    status_code = 403


class NotFoundError(APIError):
    """The model, deployment or route does not exist (404)."""

    status_code = 404


class UnprocessableEntityError(APIError):
    """The request was well-formed but could not be processed (422)."""

    status_code = 422


class RateLimitError(APIError):
    """Too many requests or tokens (429); ``retry_after`` holds the provider's hint."""

    status_code = 429


class RouterRateLimitError(RateLimitError):
    """Every deployment of a Router's model group is cooling down; ``retry_after`` says for how long."""


class InternalServerError(APIError):
    """The provider failed (500 and other 5xx without their own class)."""

    status_code = 500


class ServiceUnavailableError(APIError):
    """The provider is down or overloaded (503, Anthropic's 529)."""

    status_code = 503


class APIConnectionError(LmgateError):
    """The provider could not be reached, or the connection broke mid-response."""

    status_code = 500


class Timeout(APIConnectionError):
    """The provider did not answer within the timeout."""

    status_code = 408


# ---- names the reference exports that lmgate does not raise itself (or raises under the name above):
# there so that a migrating user's ``except litellm.X`` and ``isinstance(e, litellm.X)`` work


class InvalidRequestError(BadRequestError):
    """The reference's older name for a malformed request (400); lmgate raises ``BadRequestError``."""


class PaymentRequiredError(BadRequestError):
    """The provider wants payment (402), a subclass of ``BadRequestError`` as in the reference."""

    status_code = 402


class UnsupportedEndpointError(BadRequestError):
    """The provider does not offer this endpoint for the model."""


class BadGatewayError(APIError):
    """A gateway in front of the provider failed (502)."""

    status_code = 502


class APIResponseValidationError(APIError):
    """The provider's answer did not have the expected shape."""

    status_code = 500


class JSONSchemaValidationError(APIResponseValidationError):
    """The answer did not match the ``response_format`` JSON schema."""


class OpenAIError(APIError):
    """The reference's catch-all provider error class (its other errors do not derive from it either)."""


#: the reference's name for "no provider for this model"
LiteLLMUnknownProvider = UnknownModelError


class MockException(APIError):
    """The reference's error for tests (``MockException(status_code, message, llm_provider, model)``);
    an ``openai.APIError`` there, lmgate's ``APIError`` here, so ``except litellm.APIError`` catches it."""

    def __init__(
        self,
        status_code: int,
        message: str,
        llm_provider: str | None,
        model: str | None,
        request: Any = None,
        litellm_debug_info: str | None = None,
        max_retries: int | None = None,
        num_retries: int | None = None,
    ) -> None:
        super().__init__(message, llm_provider, model, status_code=status_code)
        self.request = request
        self.litellm_debug_info = litellm_debug_info
        self.max_retries = max_retries
        self.num_retries = num_retries

    def __reduce__(self) -> Any:
        return (type(self), (self.status_code, self.message, self.llm_provider, self.model))


class BudgetExceededError(Exception):
    """A budget is spent. As in the reference, its own root (not an ``APIError``), status 422, so
    existing ``except BudgetExceededError:`` handlers keep their meaning."""

    status_code = 422

    def __init__(
        self,
        current_cost: float,
        max_budget: float,
        message: str | None = None,
        llm_provider: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
    ) -> None:
        self.current_cost = current_cost
        self.max_budget = max_budget
        self.llm_provider = llm_provider or ""
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.message = message or (
            f"Budget has been exceeded! Current cost: {current_cost}, Max budget: {max_budget}"
        )
        super().__init__(self.message)

    def __reduce__(self) -> Any:
        return (
            type(self),
            (
                self.current_cost,
                self.max_budget,
                self.message,
                self.llm_provider,
                self.entity_type,
                self.entity_id,
            ),
        )


class ModelNotMappedError(Exception):
    """The reference's error for a model with no entry in its price map (a bare ``Exception``)."""


class CallbackError(LmgateError):
    """A callback raised; only surfaced when ``lmgate.strict_callbacks`` is on."""


class ConfigError(LmgateError, ValueError):
    """A configuration value is missing or wrong; the message names the file, the key path and the fix."""

    def __init__(
        self, message: str, file: str | None = None, key: str | None = None, fix: str | None = None
    ) -> None:
        # rendered like "config.yaml: general_settings.max_request_size_mb: must be ... (fix: ...)"
        located = ": ".join(part for part in (file, key, message) if part)
        super().__init__(f"{located} (fix: {fix})" if fix else located)
        self.file = file
        self.key = key
        self.fix = fix
        from ._secrets import scrub

        self.detail = scrub(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.detail, self.file, self.key, self.fix))


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
    529: ServiceUnavailableError,
}


def exception_for_status(status: int) -> type[APIError]:
    """The most specific class for an HTTP status."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return InternalServerError
    if status >= 400:
        return BadRequestError
    return APIError
