"""Errors of the HTTP API as JSON with a stable `code` (docs/api.md): the store's own
exceptions keep their class and details, so the remote client raises the same ones."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError as NinjaAuthenticationError
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from statehouse_agents.api.schemas import ErrorOut

from statehouse._wire import error_body
from statehouse.errors import AuthenticationError, RateLimitedError, StatehouseError

ERROR_RESPONSES: dict[int, Any] = dict.fromkeys((401, 403, 404, 409, 422, 429, 503), ErrorOut)


def stream_error(exc: StatehouseError) -> dict[str, Any]:
    return error_body(exc)[1]


def _respond(api: NinjaAPI, request: HttpRequest, exc: StatehouseError) -> HttpResponse:
    status, body = error_body(exc)
    response = api.create_response(request, body, status=status)
    if isinstance(exc, RateLimitedError):
        response["Retry-After"] = "60"
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="statehouse"'
    return response


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(
            str(part) for part in error.get("loc", ()) if part not in ("body", "query")
        )
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def install(api: NinjaAPI) -> None:
    """Register the handlers that turn every error into the JSON body of ErrorOut."""

    @api.exception_handler(StatehouseError)
    def store_error(request: HttpRequest, exc: StatehouseError) -> HttpResponse:
        return _respond(api, request, exc)

    @api.exception_handler(NinjaAuthenticationError)
    def no_token(request: HttpRequest, exc: Exception) -> HttpResponse:
        return _respond(
            api, request, AuthenticationError("no API token: send 'Authorization: Bearer <token>'")
        )

    @api.exception_handler(NinjaValidationError)
    def bad_request(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        errors = [dict(e) for e in exc.errors]
        body = {
            "code": "validation",
            "message": _validation_message(errors),
            "error": "ValidationError",
            "details": {
                "errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
            },
        }
        return api.create_response(request, body, status=422)

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        code = "validation" if exc.status_code < 500 else "unavailable"
        body = {"code": code, "message": str(exc), "error": "StatehouseError", "details": {}}
        return api.create_response(request, body, status=422 if code == "validation" else 503)
