"""``--retention``: the clean-up on a schedule, in a thread of the scheduler's process."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline_core.cli import build_parser
from pipeline_core.retention.policy import RetentionPolicy
from tests.retention.history import BASE, fill, runs_left, statistics, whole


def test_the_policy_cleans_what_is_past_the_age_and_keeps_the_rest(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db")
    before = statistics(store)
    now = BASE + timedelta(days=1, hours=12)  # cut-off: 12 hours after BASE
    policy = RetentionPolicy(store, timedelta(days=1), first_delay=0, interval=3600,
                             now=lambda: now).start()  # fmt: skip
    try:
        assert policy.cleaned.wait(30)
    finally:
        policy.stop()
    assert policy.last is not None and policy.last.runs == 3 * 12
    assert runs_left(store) == 3 * 88 and whole(store)
    assert statistics(store) == before
    store.close()


def test_a_failed_clean_up_is_a_warning_and_the_thread_lives_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = fill(tmp_path / "s.db", runs=3)
    store.close()  # the database is away
    policy = RetentionPolicy(store, timedelta(days=1), first_delay=0, interval=0.01).start()
    with caplog.at_level(logging.WARNING):
        assert policy.cleaned.wait(30)
        policy.cleaned.clear()
        assert policy.cleaned.wait(30)  # tried again
    policy.stop()
    assert "retention: the clean-up failed" in caplog.text


@pytest.mark.parametrize("command", ["serve", "scheduler"])
def test_serve_and_scheduler_take_an_age(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([command, "--retention", "90d"])
    assert args.retention == timedelta(days=90)
    assert build_parser().parse_args([command]).retention is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--retention", "soon"])
    assert "invalid duration 'soon'" in capsys.readouterr().err
