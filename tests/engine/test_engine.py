"""The engine end to end on a real SQLite store with the local executor."""

from __future__ import annotations

import pytest

from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.types import EventQuery
from tests import fixtures
from tests.engine.conftest import ManualClock, dag_from

T = "tests.fixtures"


def test_linear_chain_runs_in_order(harness):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: python, callable: "{T}:track", kwargs: {{name: a, seconds: 0}}}}
          b: {{type: python, callable: "{T}:track", kwargs: {{name: b, seconds: 0}}, depends_on: [a]}}
          c: {{type: python, callable: "{T}:track", kwargs: {{name: c, seconds: 0}}, depends_on: [b]}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert fixtures.order == ["a", "b", "c"]
    events = harness.store.events.read_events(EventQuery(run_id=run.run_id))
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    task_events = [
        (e.task_id, e.payload["new_state"]) for e in events if e.type == "task.state_changed"
    ]
    assert task_events == [(t, s) for t in "abc" for s in ("running", "success")]
    run_events = [e.payload["new_state"] for e in events if e.type == "run.state_changed"]
    assert run_events == ["queued", "running", "success"]


def test_diamond_runs_middle_tasks_in_parallel(harness):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: noop}}
          b: {{type: python, callable: "{T}:track", kwargs: {{name: b, seconds: 0.3}}, depends_on: [a]}}
          c: {{type: python, callable: "{T}:track", kwargs: {{name: c, seconds: 0.3}}, depends_on: [a]}}
          d: {{type: noop, depends_on: [b, c]}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert fixtures.counts["peak"] == 2
    d, b, c = harness.ti(run, "d"), harness.ti(run, "b"), harness.ti(run, "c")
    assert d.start_date >= max(b.end_date, c.end_date)


def test_failure_marks_downstream_upstream_failed(harness):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: python, callable: "{T}:boom"}}
          b: {{depends_on: [a]}}
          c: {{depends_on: [b]}}
          side: {{}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert harness.states(run) == {
        "a": "failed",
        "b": "upstream_failed",
        "c": "upstream_failed",
        "side": "success",
    }
    assert harness.ti(run, "a").error == "ValueError: boom"
    assert (
        "ValueError: boom"
        in harness.store.task_data.read_log(TaskKey("t", run.run_id, "a"), 1).text
    )


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        ("all_success", ("ok", "ok"), "success"),
        ("all_success", ("ok", "bad"), "upstream_failed"),
        ("all_failed", ("bad", "bad"), "success"),
        ("all_failed", ("ok", "bad"), "skipped"),
        ("all_done", ("ok", "bad"), "success"),
        ("one_success", ("ok", "bad"), "success"),
        ("one_success", ("bad", "bad"), "upstream_failed"),
        ("one_failed", ("ok", "bad"), "success"),
        ("one_failed", ("ok", "ok"), "skipped"),
        ("none_failed", ("ok", "ok"), "success"),
        ("none_failed", ("ok", "bad"), "upstream_failed"),
        ("none_skipped", ("ok", "bad"), "success"),
        ("always", ("bad", "bad"), "success"),
    ],
)
def test_trigger_rules_end_to_end(harness, rule, upstream, expected):
    bodies = {"ok": "{type: noop}", "bad": f'{{type: python, callable: "{T}:boom"}}'}
    dag = dag_from(
        f"""
        tasks:
          u1: {bodies[upstream[0]]}
          u2: {bodies[upstream[1]]}
          target: {{type: noop, depends_on: [u1, u2], trigger_rule: {rule}}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run)["target"] == expected


def test_none_skipped_sees_a_skip(harness):
    dag = dag_from(
        """
        tasks:
          pick:
            type: branch
            branches: [{when: "1 > 2", follow: [left]}]
            default: [right]
          left: {depends_on: [pick]}
          right: {depends_on: [pick]}
          strict: {depends_on: [left, right], trigger_rule: none_skipped}
          lenient: {depends_on: [left, right], trigger_rule: none_failed}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {
        "pick": "success",
        "left": "skipped",
        "right": "success",
        "strict": "skipped",
        "lenient": "success",
    }
    assert run.state is RunState.SUCCESS


def test_branch_callable_reads_conf(harness):
    dag = dag_from(
        f"""
        tasks:
          pick: {{type: branch, callable: "{T}:choose"}}
          left: {{depends_on: [pick]}}
          right: {{depends_on: [pick]}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t", {"go": "right"})))
    assert harness.states(run) == {"pick": "success", "left": "skipped", "right": "success"}


def test_xcom_flows_through_templates(harness):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 2}}}}
          b: {{type: python, callable: "{T}:add", kwargs: {{a: "{{{{ xcom.a.return_value }}}}", b: 10}}, depends_on: [a]}}
          c:
            type: shell
            depends_on: [b]
            command: "echo {{{{ xcom.b.return_value }}}}-{{{{ dag_run.conf.suffix }}}}-{{{{ run_id }}}}-{{{{ ds }}}}"
          d: {{type: python, callable: "{T}:with_context", depends_on: [c]}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t", {"suffix": "z"}, run_id="r-1")))
    assert run.state is RunState.SUCCESS, harness.states(run)
    xcom = harness.store.task_data.get_xcom
    assert xcom(TaskKey("t", "r-1", "b"), "return_value").value == 13
    day = run.logical_date.strftime("%Y-%m-%d")
    assert xcom(TaskKey("t", "r-1", "c"), "return_value").value == f"13-z-r-1-{day}"
    assert xcom(TaskKey("t", "r-1", "d"), "return_value").value == {
        "run_id": "r-1",
        "conf": {"suffix": "z"},
        "ds": day,
    }
    assert xcom(TaskKey("t", "r-1", "d"), "extra").value == {"task": "d", "try": 1}
    log = harness.store.task_data.read_log(TaskKey("t", "r-1", "d"), 1).text
    assert "hello from the task log" in log and "printed line" in log
    assert log.splitlines()[0].startswith("[20")


def test_missing_template_value_fails_naming_it(harness):
    dag = dag_from(
        """
        tasks:
          a: {type: shell, command: "echo {{ dag_run.conf.missing }}"}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert "dag_run.conf.missing" in harness.ti(run, "a").error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f'{{type: python, callable: "{T}:not_json"}}', "not JSON-serialisable"),
        (
            f'{{type: python, callable: "{T}:huge", kwargs: {{size: 2000000}}}}',
            "over the 1.0 MiB limit",
        ),
        ('{type: shell, command: "exit 3"}', "exited with code 3"),
        ('{type: python, callable: "tests.fixtures:nope"}', "cannot import callable"),
        ('{type: python, callable: "no_such_module_xyz:f"}', "cannot import callable"),
    ],
)
def test_bad_task_outcomes_fail_only_that_task(harness, body, message):
    dag = dag_from(f"tasks:\n  bad: {body}\n  good: {{type: noop}}\n")
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {"bad": "failed", "good": "success"}
    assert message in harness.ti(run, "bad").error


def test_megabytes_of_output_are_capped_in_the_log(harness):
    harness.store.log_cap_bytes = 256 * 1024
    dag = dag_from(
        'tasks:\n  loud: {type: shell, command: "yes line-of-output | head -c 5000000"}\n'
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    assert run.state is RunState.SUCCESS
    log = harness.store.task_data.read_log(TaskKey("t", run.run_id, "loud"), 1)
    assert log.truncated and log.size < 300 * 1024


def test_retries_wait_their_delay_with_backoff_on_the_engines_clock(harness):
    """The retry delays pass on an injected clock: the test moves it, nothing sleeps."""
    dag = dag_from(
        f"""
        tasks:
          flaky:
            type: python
            callable: "{T}:fail_times"
            kwargs: {{name: flaky, times: 2}}
            retries: 2
            retry_delay: 60s
            retry_exponential_backoff: true
        """
    )
    clock = ManualClock()
    engine = harness.start(dag, clock=clock)
    run = engine.trigger(TriggerRequest("t"))

    def flaky_events() -> list[str]:
        events = harness.store.events.read_events(EventQuery(task_id="flaky"))
        return [e.payload["new_state"] for e in events]

    for try_number, delay in ((1, 60), (2, 120)):
        harness.wait_for(lambda n=try_number: flaky_events().count("up_for_retry") == n)
        clock.advance(delay - 1)
        engine.call(lambda: None)  # a wake-up one second before the delay is over
        assert harness.ti(run, "flaky").state.value == "up_for_retry"
        clock.advance(1)
        engine.call(lambda: None)
    run = harness.wait_run(run)
    assert run.state is RunState.SUCCESS
    ti = harness.ti(run, "flaky")
    assert (ti.try_number, ti.max_tries) == (3, 3)
    assert flaky_events() == [
        "running",
        "up_for_retry",
        "queued",
        "running",
        "up_for_retry",
        "queued",
        "running",
        "success",
    ]
    events = harness.store.events.read_events(EventQuery(task_id="flaky"))
    assert events[1].payload["error"].startswith("RuntimeError: attempt 1")


def test_out_of_retries_fails(harness):
    dag = dag_from(f'tasks:\n  f: {{type: python, callable: "{T}:boom", retries: 1}}\n')
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert harness.ti(run, "f").try_number == 2


def test_timeout_kills_the_shell_task_and_retries(harness, tmp_path):
    marker = tmp_path / "attempts"
    dag = dag_from(
        f"""
        tasks:
          slow:
            type: shell
            command: "echo x >> {marker}; if [ $(wc -l < {marker}) -lt 2 ]; then sleep 30; fi"
            timeout: 0.5s
            retries: 1
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    events = harness.store.events.read_events(
        EventQuery(task_id="slow", types=("task.state_changed",))
    )
    retry = next(e for e in events if e.payload["new_state"] == "up_for_retry")
    assert retry.payload["error"] == "timed out after 0.5s"
    assert harness.ti(run, "slow").try_number == 2
