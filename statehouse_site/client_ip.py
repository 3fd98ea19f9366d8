"""The address a request came from, for the login lockout (docs/configuration.md)."""

from __future__ import annotations

from django.http import HttpRequest
from statehouse_agents.conf import get_settings


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR; behind a proxy (STATEHOUSE_BEHIND_PROXY), the address it appended last
    to X-Forwarded-For: the entries before it are the client's to forge."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    if get_settings().behind_proxy:
        forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return remote
