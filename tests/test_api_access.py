"""docs/api.md, tokens: who may call the HTTP API, and what a refused request leaves behind
(nothing). Requests go to the real test server (tests/conftest.py, `api_server`)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.core.management import call_command
from django.utils import timezone
from statehouse_agents.models import ApiToken, Commit
from statehouse_agents.store.tokens import digest, find_token, revoke_token

from statehouse import Statehouse
from statehouse.errors import AuthenticationError, PermissionDeniedError, RateLimitedError

from .conftest import database_url_of_test_db, make_token

COMMIT = {
    "namespace": "default",
    "operations": [{"agent_id": "a1", "key": "task", "value": {"task": "t"}}],
}


def post(url: str, secret: str | None, body: dict = COMMIT) -> httpx.Response:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{url}/api/v1/transactions", json=body, headers=headers, timeout=30)


def assert_refused(response: httpx.Response, status: int, code: str, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert text in body["message"]
    assert Commit.objects.count() == 0


def test_a_valid_token_commits(api_server: str, transactional_db: None) -> None:
    _token, secret = make_token()
    response = post(api_server, secret)
    assert response.status_code == 200, response.text
    commit = Commit.objects.get()
    assert response.json()["commit_ts"] == commit.pk
    # No txn_id sent: the server made one, in time order (docs/architecture.md).
    assert response.json()["txn_id"] == str(commit.txn_id)
    assert commit.txn_id.version == 7


def test_a_txn_id_sent_again_is_409_and_applies_nothing(
    api_server: str, transactional_db: None
) -> None:
    _token, secret = make_token()
    txn_id = "e3e70682-c209-4cac-a29f-6fbed82c07cd"  # any UUID the caller chooses
    assert post(api_server, secret, {**COMMIT, "txn_id": txn_id}).json()["txn_id"] == txn_id
    again = {**COMMIT, "txn_id": txn_id, "operations": [{"agent_id": "a1", "key": "k", "value": 1}]}
    response = post(api_server, secret, again)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "conflict"
    assert (
        response.json()["message"]
        == f"transaction {txn_id} was already committed; nothing was applied"
    )
    assert [str(c.txn_id) for c in Commit.objects.all()] == [txn_id]


def test_no_token_is_401_and_writes_nothing(api_server: str, transactional_db: None) -> None:
    response = post(api_server, None)
    assert_refused(response, 401, "unauthorized", "no API token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_is_401(api_server: str, transactional_db: None) -> None:
    make_token()
    assert_refused(post(api_server, "sh_not-a-token"), 401, "unauthorized", "unknown API token")


def test_a_revoked_token_is_401(api_server: str, transactional_db: None) -> None:
    token, secret = make_token()
    revoke_token(token_id=token.pk)
    assert_refused(post(api_server, secret), 401, "unauthorized", "was revoked")


def test_an_expired_token_is_401(api_server: str, transactional_db: None) -> None:
    token, secret = make_token(expires_in=timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(post(api_server, secret), 401, "unauthorized", "expired at")


def test_an_inactive_users_token_is_401(api_server: str, transactional_db: None) -> None:
    token, secret = make_token()
    token.user.is_active = False
    token.user.save()
    assert_refused(post(api_server, secret), 401, "unauthorized", "inactive")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/transactions", COMMIT),
        ("/agents/start", {"agent_id": "a1", "task": "t"}),
        ("/agents/step", {"agent_id": "a1", "number": 0, "status": "pending"}),
        ("/agents/finish", {"agent_id": "a1", "answer": 1}),
        ("/agents/fail", {"agent_id": "a1", "error": "x"}),
        ("/agents/resume-entry-point", {"agent_id": "a1", "entry_point": "m:f"}),
        ("/agents/resume-requests", {"agent_id": "a1"}),
        ("/leases/renew", {"owner_token": "x" * 16}),
        ("/leases/release", {"owner_token": "x" * 16}),
    ],
)
def test_a_read_only_token_cannot_write(
    api_server: str, transactional_db: None, path: str, body: dict
) -> None:
    _token, secret = make_token(read_only=True)
    response = httpx.post(
        f"{api_server}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {secret}"}
    )
    assert_refused(response, 403, "forbidden", "read-only")


def test_a_read_only_token_reads(api_server: str, sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    _token, secret = make_token(read_only=True)
    with Statehouse(api_server, token=secret) as reader:
        assert reader.get_state("a1", "task").value == {"task": "t"}
        assert reader.list_keys("a1") == ["task"]
        with pytest.raises(PermissionDeniedError, match="read-only"):
            reader.start("a2", "t")


def test_a_token_scoped_to_a_namespace_cannot_use_another(
    api_server: str, transactional_db: None
) -> None:
    _token, secret = make_token(namespaces=["blue"])
    blue = {**COMMIT, "namespace": "blue"}
    green = {**COMMIT, "namespace": "green"}
    assert_refused(post(api_server, secret, green), 403, "forbidden", "'green'")
    reads = httpx.get(
        f"{api_server}/api/v1/keys",
        params={"namespace": "green", "agent_id": "a1"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert (reads.status_code, reads.json()["code"]) == (403, "forbidden")
    assert post(api_server, secret, blue).status_code == 200


def test_the_remote_client_raises_the_access_errors(
    api_server: str, transactional_db: None
) -> None:
    _token, secret = make_token(namespaces=["blue"])
    green = Statehouse(api_server, namespace="green", token=secret)
    with green, pytest.raises(PermissionDeniedError, match="namespace 'green'"):
        green.get_state("a1", "k")
    wrong = Statehouse(api_server, token="sh_wrong")
    with wrong, pytest.raises(AuthenticationError, match="unknown API token"):
        wrong.health()
    assert Commit.objects.count() == 0


def test_requests_past_the_rate_limit_are_429(api_server: str, transactional_db: None) -> None:
    _token, secret = make_token(rate_limit=3)
    headers = {"Authorization": f"Bearer {secret}"}
    statuses = [
        httpx.get(f"{api_server}/api/v1/health", headers=headers).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    refused = httpx.get(f"{api_server}/api/v1/health", headers=headers)
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    with Statehouse(api_server, token=secret) as client, pytest.raises(RateLimitedError):
        client.get_state("a1", "k")


def test_last_use_is_recorded(api_server: str, transactional_db: None) -> None:
    token, secret = make_token()
    assert token.last_used_at is None
    httpx.get(f"{api_server}/api/v1/health", headers={"Authorization": f"Bearer {secret}"})
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_find_token_reads_the_row_as_the_orm_does(transactional_db: None) -> None:
    token, secret = make_token(
        "scoped", namespaces=["ns-b", "ns-a"], read_only=True, expires_in=timedelta(days=2)
    )
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    orm = ApiToken.objects.get(pk=token.pk)
    found, user_active = find_token(secret)  # type: ignore[misc]
    assert user_active is True
    assert (found.pk, found.user_id, found.prefix, found.namespaces, found.read_only) == (
        orm.pk,
        orm.user_id,
        orm.prefix,
        ["ns-a", "ns-b"],
        True,
    )
    assert (found.expires_at, found.revoked_at, found.window_start) == (
        orm.expires_at,
        orm.revoked_at,
        None,
    )
    assert found.expires_at is not None and found.expires_at.tzinfo is not None
    assert found.allows_namespace("ns-a") and not found.allows_namespace("ns-c")
    orm.user.is_active = False
    orm.user.save()
    assert find_token(secret) == (found, False)
    assert find_token("sh_unknown") is None


def test_find_token_proves_the_connection_and_reconnects_once_if_it_was_dropped(
    transactional_db: None,
) -> None:
    from django.db import connection

    token, secret = make_token()
    connection.health_check_done = False  # type: ignore[attr-defined]  # a request's start
    assert find_token(secret)[0].pk == token.pk  # type: ignore[index]
    assert connection.health_check_done is True  # type: ignore[attr-defined]  # no SELECT 1 needed
    if connection.vendor != "postgresql":
        return  # an SQLite file is never dropped by a server
    import psycopg

    pid = connection.connection.info.backend_pid
    with psycopg.connect(database_url_of_test_db(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    connection.health_check_done = False  # type: ignore[attr-defined]  # the next request
    assert find_token(secret)[0].pk == token.pk  # type: ignore[index]
    assert connection.connection.info.backend_pid != pid


def test_tokens_are_stored_as_digests_only(transactional_db: None) -> None:
    token, secret = make_token()
    assert secret.startswith("sh_") and len(secret) > 40
    row = ApiToken.objects.get(pk=token.pk)
    assert row.digest == digest(secret) != secret
    assert secret not in str(ApiToken.objects.values().get(pk=token.pk))


def test_create_token_prints_the_token_alone_on_its_last_line(
    api_server: str, transactional_db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.contrib.auth.models import User

    User.objects.create(username="ops")
    call_command(
        "create_token",
        "ops",
        "--namespace",
        "blue",
        "--namespace",
        "red",
        "--read-only",
        "--expires",
        "7",
    )
    secret = capsys.readouterr().out.splitlines()[-1]
    token = ApiToken.objects.get(digest=digest(secret))
    assert (token.user.username, token.namespaces, token.read_only) == (
        "ops",
        ["blue", "red"],
        True,
    )
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    with Statehouse(api_server, namespace="blue", token=secret) as client:
        assert client.list_keys("a1") == []


def test_create_token_for_an_unknown_user_fails(transactional_db: None) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("create_token", "ghost")
    assert ApiToken.objects.count() == 0


@pytest.mark.parametrize(
    ("operation", "field", "problem"),
    [
        ({"owner": {"token": "short", "host": "h", "pid": 1}}, "owner.token", "at least 8"),
        (
            {"operations": [{"agent_id": "a\x01", "key": "k", "value": 1}]},
            "operations.0.agent_id",
            "should match pattern",
        ),
        (
            {"operations": [{"agent_id": "a1", "key": "k", "op": "upsert"}]},
            "operations.0.op",
            "'write' or 'delete'",
        ),
        (
            {"operations": [{"agent_id": "a1", "key": "k", "expected_version": -1}]},
            "operations.0.expected_version",
            "greater than or equal to 0",
        ),
    ],
    ids=["nested owner", "control character", "unknown op", "negative expectation"],
)
def test_a_malformed_body_is_422_validation_naming_the_field_and_writes_nothing(
    api_server: str, transactional_db: None, operation: dict, field: str, problem: str
) -> None:
    """A bad request is a typed `validation` error, nested objects included (docs/api.md,
    "Errors")."""
    _token, secret = make_token()
    response = post(api_server, secret, {**COMMIT, **operation})
    assert_refused(response, 422, "validation", f"invalid request: {field}")
    assert problem in response.json()["message"]
    assert response.json()["error"] == "ValidationError"


def test_a_malformed_query_is_422_validation_naming_the_parameter(
    api_server: str, transactional_db: None
) -> None:
    _token, secret = make_token()
    response = httpx.get(
        f"{api_server}/api/v1/state",
        params={"agent_id": "", "key": "k"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation"
    assert response.json()["message"].startswith("invalid request: agent_id:")
    assert response.json()["error"] == "ValidationError"
