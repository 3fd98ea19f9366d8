"""`/metrics`: the Prometheus endpoint (docs/metrics.md). No login and no session: a
scraper is let in by its address (STATEHOUSE_METRICS_NETWORKS) or by a Bearer token
(STATEHOUSE_METRICS_TOKEN)."""

from __future__ import annotations

import hmac
import ipaddress

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST
from statehouse_agents import metrics as metrics_module
from statehouse_agents.conf import StatehouseSettings, get_settings

from statehouse_site.client_ip import client_ip


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request, get_settings())
    if refusal is not None:
        return refusal
    return HttpResponse(metrics_module.render(), content_type=CONTENT_TYPE_LATEST)


def _refusal(request: HttpRequest, settings: StatehouseSettings) -> HttpResponse | None:
    """None when the scraper may read: its address is in an allowed network, or it sent
    the token. Otherwise 401 (a token is configured: send it) or 403 (nothing would do)."""
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        address = None
    if address is not None and any(address in net for net in settings.metrics_networks):
        return None
    if not settings.metrics_token:
        return HttpResponse(
            "metrics are not open to this address (STATEHOUSE_METRICS_NETWORKS)\n",
            status=403,
            content_type="text/plain",
        )
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), settings.metrics_token.encode()
    ):
        return None
    response = HttpResponse(
        "a valid metrics token is required (Authorization: Bearer <token>)\n",
        status=401,
        content_type="text/plain",
    )
    response["WWW-Authenticate"] = 'Bearer realm="statehouse-metrics"'
    return response
