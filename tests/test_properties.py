"""Property-based tests of docs/contract.md §2: the store behaves like a tiny in-memory model.

Hypothesis generates sequences of transactions on 2 agents x 3 keys — writes, deletes,
compare-and-set expectations, repeated writes of one key, empty transactions, and
transactions that end in a commit, an exception inside `with`, or `tx.abort()`. The same
sequence runs against the real store and against the model below; afterwards every read
(get_state, list_keys, get_state_at_version, replay) must agree with the model.
Each example uses a fresh namespace, so no database reset is needed between examples.

A second family feeds invalid values and identifiers and checks ValidationError, with
nothing written. The suite runs on SQLite and PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from statehouse_agents.models import Agent, Commit, Record, Version

from statehouse import (
    ConflictError,
    NotFoundError,
    Statehouse,
    TransactionError,
    ValidationError,
)

AGENTS = ("agent-a", "agent-b")
KEYS = ("k0", "k1", "notes")
_namespaces = itertools.count()

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fresh_namespace() -> str:
    return f"prop-{next(_namespaces)}-{uuid.uuid4().hex[:8]}"


# --- strategies -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
# Mostly no expectation, so that most transactions commit; some CAS, right or wrong.
expectations = st.sampled_from([None, None, None, None, 0, 1, 2, 3])

write_ops = st.tuples(
    st.just("write"), st.sampled_from(AGENTS), st.sampled_from(KEYS), json_values, expectations
)
delete_ops = st.tuples(
    st.just("delete"), st.sampled_from(AGENTS), st.sampled_from(KEYS), st.none(), expectations
)
transactions = st.tuples(
    st.lists(write_ops | delete_ops, max_size=5),
    st.sampled_from(["commit", "commit", "commit", "explicit-commit", "raise", "abort"]),
)


# --- the model ------------------------------------------------------------------------------

TOMBSTONE = object()


@dataclass
class Model:
    """docs/contract.md §2 in a few lines: versions per record, events per agent."""

    versions: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    events: dict[str, list[tuple[int, str, list[tuple[str, Any, int, str]]]]] = field(
        default_factory=dict
    )

    def version(self, agent: str, key: str) -> int:
        return len(self.versions.get((agent, key), []))

    def absent(self, agent: str, key: str) -> bool:
        history = self.versions.get((agent, key))
        return not history or history[-1] is TOMBSTONE

    def conflicts(self, staged: dict[tuple[str, str], tuple[str, Any, int | None]]) -> bool:
        for (agent, key), (_op, _value, expected) in staged.items():
            if expected is None:
                continue
            if expected == 0 and self.absent(agent, key):
                continue
            if expected != self.version(agent, key):
                return True
        return False

    def apply(
        self, staged: dict[tuple[str, str], tuple[str, Any, int | None]], ts: int, txn: str
    ) -> None:
        per_agent: dict[str, list[tuple[str, Any, int, str]]] = {}
        for (agent, key), (op, value, _expected) in staged.items():
            history = self.versions.setdefault((agent, key), [])
            history.append(TOMBSTONE if op == "delete" else value)
            per_agent.setdefault(agent, []).append(
                (key, None if op == "delete" else value, len(history), op)
            )
        for agent, ops in per_agent.items():
            self.events.setdefault(agent, []).append((ts, txn, sorted(ops)))


class Boom(Exception):
    pass


def stage(tx: Any, staged: dict, op: tuple) -> None:
    """Stage `op` on the real transaction and mirror it in `staged` (the model's view)."""
    kind, agent, key, value, expected = op
    earlier = staged.get((agent, key))
    if earlier is not None and earlier[2] is not None:
        if expected is not None and expected != earlier[2]:
            # Contradicting expectations for one key: refused at staging, nothing changes.
            with pytest.raises(ValidationError):
                _stage_real(tx, op)
            return
        expected = earlier[2]
    _stage_real(tx, op)
    staged.pop((agent, key), None)  # a later write replaces the earlier one
    staged[(agent, key)] = (kind, json.loads(json.dumps(value)), expected)


def _stage_real(tx: Any, op: tuple) -> None:
    kind, agent, key, value, expected = op
    if kind == "write":
        tx.write(agent_id=agent, key=key, value=value, expected_version=expected)
    else:
        tx.delete(agent_id=agent, key=key, expected_version=expected)


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells 1 from 1.0 from True, and -0.0 from 0.0 does not matter."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def run_sequence(client: Statehouse, ns: str, sequence: list, model: Model) -> None:
    last_ts = 0
    for ops, ending in sequence:
        staged: dict[tuple[str, str], tuple[str, Any, int | None]] = {}
        commit_ts: int | None = None
        conflict = False
        try:
            with client.begin_transaction(namespace=ns) as tx:
                for op in ops:
                    stage(tx, staged, op)
                if ending == "raise":
                    raise Boom
                if ending == "abort":
                    tx.abort()
                    tx.abort()  # idempotent
                    with pytest.raises(TransactionError):
                        tx.write(agent_id=AGENTS[0], key=KEYS[0], value=1)
                elif ending == "explicit-commit":
                    commit_ts = tx.commit()
        except Boom:
            pass
        except ConflictError:
            conflict = True
        if ending in ("commit", "explicit-commit") and not conflict:
            commit_ts = tx.commit_ts
        expected_conflict = ending in ("commit", "explicit-commit") and model.conflicts(staged)
        assert conflict == expected_conflict, (staged, ending)
        event("conflict" if conflict else f"{ending} of {len(staged)} op(s)")
        if ending not in ("commit", "explicit-commit") or conflict or not staged:
            assert commit_ts is None  # aborted, conflicting or empty: no commit_ts, no event
            continue
        assert isinstance(commit_ts, int) and commit_ts > last_ts
        last_ts = commit_ts
        model.apply(staged, commit_ts, tx.txn_id)


def check_against_model(client: Statehouse, ns: str, model: Model) -> None:
    for agent in AGENTS:
        live = []
        for key in KEYS:
            history = model.versions.get((agent, key), [])
            state = client.get_state(agent, key, namespace=ns)
            assert state.version == len(history), (agent, key)
            if not history or history[-1] is TOMBSTONE:
                assert not state.exists and state.value is None, (agent, key)
            else:
                live.append(key)
                assert state.exists and same(state.value, history[-1]), (agent, key)
            for number, value in enumerate(history, start=1):
                old = client.get_state_at_version(agent, key, number, namespace=ns)
                assert old.version == number
                if value is TOMBSTONE:
                    assert not old.exists and old.value is None
                else:
                    assert old.exists and same(old.value, value)
            with pytest.raises(NotFoundError):
                client.get_state_at_version(agent, key, len(history) + 1, namespace=ns)
        assert client.list_keys(agent, namespace=ns) == sorted(live)
        replayed = [
            (
                event.commit_ts,
                event.txn_id,
                sorted((op.key, op.value, op.version, op.op) for op in event.operations),
            )
            for event in client.replay(agent, namespace=ns)
        ]
        wanted = model.events.get(agent, [])
        assert [(ts, txn) for ts, txn, _ in replayed] == [(ts, txn) for ts, txn, _ in wanted]
        for (_, _, got_ops), (_, _, want_ops) in zip(replayed, wanted, strict=True):
            assert len(got_ops) == len(want_ops)
            for got, want in zip(got_ops, want_ops, strict=True):
                assert got[0] == want[0] and got[2:] == want[2:] and same(got[1], want[1])


@SETTINGS
@given(sequence=st.lists(transactions, min_size=1, max_size=10))
def test_any_sequence_matches_the_model(sh: Statehouse, sequence: list) -> None:
    ns = fresh_namespace()
    model = Model()
    run_sequence(sh, ns, sequence, model)
    check_against_model(sh, ns, model)
    # Nothing else was recorded: one Commit row per committed transaction, no more.
    committed = {txn for events in model.events.values() for _ts, txn, _ops in events}
    recorded = Commit.objects.filter(namespace=ns).values_list("txn_id", flat=True)
    assert sorted(str(t) for t in recorded) == sorted(committed)


# --- rejected input -------------------------------------------------------------------------


class _Odd:
    pass


def _nested(bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`bad` on its own, or buried in a list or an object."""
    return st.one_of(
        bad,
        st.builds(lambda b: [1, b], bad),
        st.builds(lambda b: {"ok": 1, "deep": {"x": b}}, bad),
    )


invalid_values = _nested(
    st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.frozensets(st.integers(), max_size=3).map(set),
        st.binary(max_size=8),
        st.tuples(st.integers()),
        st.dictionaries(
            st.integers() | st.none() | st.tuples(st.integers()), st.integers(), min_size=1
        ),
        st.builds(_Odd),
        st.builds(object),
        st.complex_numbers(allow_nan=False, allow_infinity=False),
    )
)
control_chars = st.characters(codec="utf-8", categories=["Cc"])
invalid_ids = st.one_of(
    st.just(""),
    st.text(min_size=256, max_size=300),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=5), control_chars, st.text(max_size=5)),
    st.integers(),
    st.none(),
    st.binary(min_size=1, max_size=5),
    st.tuples(st.text(min_size=1, max_size=3)),
    st.lists(st.text(max_size=2), max_size=2),
)


def assert_nothing_written(ns: str) -> None:
    assert not Commit.objects.filter(namespace=ns).exists()
    assert not Version.objects.filter(agent__namespace=ns).exists()
    assert not Record.objects.filter(agent__namespace=ns).exists()


@SETTINGS
@given(value=invalid_values)
def test_invalid_values_are_refused_and_nothing_is_written(sh: Statehouse, value: Any) -> None:
    ns = fresh_namespace()
    with sh.begin_transaction(namespace=ns) as tx:
        with pytest.raises(ValidationError) as caught:
            tx.write(agent_id="agent-a", key="bad-key", value=value)
        assert "bad-key" in str(caught.value)  # the message names the key
        assert tx.operations == []
    assert tx.commit_ts is None  # what is left is an empty transaction: no event
    # A transaction with a valid write and then a refused one commits only the valid one.
    with sh.begin_transaction(namespace=ns) as tx:
        tx.write(agent_id="agent-a", key="good", value={"n": 1})
        with pytest.raises(ValidationError):
            tx.write(agent_id="agent-a", key="good", value=value)
    state = sh.get_state("agent-a", "good", namespace=ns)
    assert (state.value, state.version) == ({"n": 1}, 1)
    assert not sh.get_state("agent-a", "bad-key", namespace=ns).exists
    assert [e.operations[0].key for e in sh.replay("agent-a", namespace=ns)] == ["good"]


@SETTINGS
@given(bad=invalid_ids, where=st.sampled_from(["agent_id", "key", "namespace"]))
def test_invalid_identifiers_are_refused_and_nothing_is_written(
    sh: Statehouse, bad: Any, where: str
) -> None:
    ns = fresh_namespace()
    ids = {"agent_id": "agent-a", "key": "k0"}
    if where == "namespace":
        if bad is None:
            bad = ""  # None means "the client's namespace" in every call
        with pytest.raises(ValidationError):
            sh.begin_transaction(namespace=bad)
        with pytest.raises(ValidationError):
            sh.get_state("agent-a", "k0", namespace=bad)
        with pytest.raises(ValidationError):
            Statehouse(namespace=bad)
        assert_nothing_written(ns)
        return
    ids[where] = bad
    with sh.begin_transaction(namespace=ns) as tx:
        with pytest.raises(ValidationError):
            tx.write(value={"x": 1}, **ids)
        with pytest.raises(ValidationError):
            tx.delete(**ids)
        assert tx.operations == []
    assert tx.commit_ts is None
    with pytest.raises(ValidationError):
        sh.get_state(namespace=ns, **ids)
    with pytest.raises(ValidationError):
        sh.get_state_at_version(version=1, namespace=ns, **ids)
    if where == "agent_id":
        with pytest.raises(ValidationError):
            sh.list_keys(bad, namespace=ns)
        with pytest.raises(ValidationError):
            list(sh.replay(bad, namespace=ns))
    assert_nothing_written(ns)
    assert not Agent.objects.filter(namespace=ns).exists()


@SETTINGS
@given(expected=st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), st.text()))
def test_invalid_expected_versions_are_refused(sh: Statehouse, expected: Any) -> None:
    ns = fresh_namespace()
    with sh.begin_transaction(namespace=ns) as tx, pytest.raises(ValidationError):
        tx.write(agent_id="agent-a", key="k0", value=1, expected_version=expected)
    assert tx.commit_ts is None
    assert_nothing_written(ns)
