from statehouse import Statehouse


def test_write_then_read(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value={"x": 1})
    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.exists) == ({"x": 1}, 1, True)


def test_child_process_sees_commit(sh: Statehouse, run_python) -> None:  # type: ignore[no-untyped-def]
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=[1, 2])
    out = run_python(
        """
        from statehouse import Statehouse
        print(Statehouse().get_state("a1", "k").value)
        """
    )
    assert out.stdout.strip() == "[1, 2]"
