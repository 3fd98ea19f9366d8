"""Step keys (docs/client.md, steps): only ASCII digits make a step number, one step number
is one step, and a number the store cannot hold is a ValidationError at staging."""

from __future__ import annotations

import pytest
from statehouse_agents.models import Agent, Step

from statehouse import Statehouse, ValidationError

DONE = {"status": "done", "result": 1}


ARABIC_INDIC_3, FULLWIDTH_5, SUPERSCRIPT_3 = "\u0663", "\uff15", "\u00b3"


@pytest.mark.parametrize(
    "key", [f"step:{ARABIC_INDIC_3}", f"step:{FULLWIDTH_5}", f"step:{SUPERSCRIPT_3}", "step:-1"]
)
def test_non_ascii_digits_make_a_plain_key(sh: Statehouse, key: str) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key=key, value=DONE)
    assert sh.get_state("a1", key).value == DONE
    assert not Step.objects.exists()
    assert sh.last_completed_step("a1") == -1
    agent = Agent.objects.get(agent_id="a1")
    assert (agent.steps_done, agent.last_step, agent.lease_owner) == (0, None, "")


def test_a_zero_padded_key_of_a_recorded_step_is_refused(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step:3", value=DONE)
    for key in ("step:03", "step/3", "step:0003"):
        with pytest.raises(ValidationError) as caught, sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key="other", value=1)
            tx.write(agent_id="a1", key=key, value=DONE)
        assert str(caught.value) == (
            f"step 3 of agent 'a1' is recorded under the key 'step:3'; write that key, "
            f"not {key!r} (one step number is one step)"
        )
        assert not sh.get_state("a1", key).exists
    assert not sh.get_state("a1", "other").exists
    assert list(Step.objects.values_list("key", "number")) == [("step:3", 3)]
    assert Agent.objects.get(agent_id="a1").steps_done == 1


def test_two_keys_of_one_step_in_one_transaction_are_refused(sh: Statehouse) -> None:
    with (
        pytest.raises(ValidationError, match="'step:3' and 'step:03' both name step 3"),
        sh.begin_transaction() as tx,
    ):
        tx.write(agent_id="a1", key="step:3", value=DONE)
        tx.write(agent_id="a1", key="step:03", value=DONE)
    assert not Agent.objects.filter(agent_id="a1", steps_done__gt=0).exists()
    assert not Step.objects.exists()


def test_a_deleted_step_may_be_written_under_another_key(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step:3", value=DONE)
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="step:3")
        tx.write(agent_id="a1", key="step:03", value=DONE)
    assert list(Step.objects.values_list("key", "number")) == [("step:03", 3)]
    assert sh.last_completed_step("a1") == 3


def test_a_key_of_a_step_below_the_highest_is_refused_too(sh: Statehouse) -> None:
    for key in ("step:3", "step:7"):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key=key, value=DONE)
    with pytest.raises(ValidationError) as caught, sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step/3", value=DONE)
    assert "recorded under the key 'step:3'; write that key, not 'step/3'" in str(caught.value)
    assert list(Step.objects.order_by("number").values_list("key", flat=True)) == [
        "step:3",
        "step:7",
    ]


def test_once_the_highest_step_is_deleted_its_number_is_free_and_the_rest_stay_taken(
    sh: Statehouse,
) -> None:
    for key in ("step:5", "step:7"):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key=key, value=DONE)
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="step:7")
    assert Agent.objects.get(agent_id="a1").last_step == 5
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step/7", value=DONE)
    with (
        pytest.raises(ValidationError, match="recorded under the key 'step:5'"),
        sh.begin_transaction() as tx,
    ):
        tx.write(agent_id="a1", key="step/5", value=DONE)
    assert list(Step.objects.order_by("number").values_list("key", flat=True)) == [
        "step:5",
        "step/7",
    ]


def test_a_step_above_the_highest_costs_no_lookup_of_its_number(sh: Statehouse) -> None:
    """An agent taking its steps in order: its steps' keys are new, and their numbers above
    every recorded one, so no commit looks for another key of the same number."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("counts the statements of SQLite's commit (PostgreSQL's: test_commit_function)")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="step:1", value=DONE)
    statements: list[str] = []
    connection.connection.set_trace_callback(statements.append)
    try:
        with sh.step("a1", 2, action="next") as step:
            step.result = 2
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key="step/1", value=DONE)  # not above: looked up, refused
    except ValidationError:
        pass
    finally:
        connection.connection.set_trace_callback(None)
    lookups = [s for s in statements if s.startswith("SELECT number, key FROM agents_step")]
    assert len(lookups) == 1 and "number IN (1)" in lookups[0]
    assert sh.last_completed_step("a1") == 2


def test_big_step_numbers_are_steps_up_to_the_limit(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with sh.step("a1", 10**9, action="far") as step:
        step.result = "ok"
    assert sh.last_completed_step("a1") == 10**9
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key=f"step:{2**31 - 1}", value=DONE)
    agent = Agent.objects.get(agent_id="a1")
    assert (agent.steps_done, agent.last_step) == (2, 2**31 - 1)
    assert sh.last_completed_step("a1") == 2**31 - 1


def test_step_numbers_the_store_cannot_hold_are_refused_at_staging(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with pytest.raises(ValidationError, match="step number must be an integer from 0 to"):
        sh.step("a1", 2**31)
    with sh.begin_transaction() as tx:
        with pytest.raises(ValidationError) as caught:
            tx.write(agent_id="a1", key="step:2147483648", value=DONE)
        assert tx.operations == []
    assert str(caught.value) == (
        "key 'step:2147483648' names step 2147483648; step numbers are 0 to 2147483647"
    )
    assert not sh.get_state("a1", "step:2147483648").exists
