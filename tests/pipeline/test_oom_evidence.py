"""A failed node is `oom` only with evidence of running out of memory, `killed` for any other
signal (a user, a scheduler), `failed` for a non-zero exit."""

import signal

import pytest

from pipeline.child import OOM_EXIT
from pipeline.runner import classify, oom_kills

KILL = -signal.SIGKILL


@pytest.mark.parametrize(
    "returncode, before, after, status",
    [
        (OOM_EXIT, None, None, "oom"),  # the child caught MemoryError / OutOfMemoryError
        (KILL, 2, 3, "oom"),  # SIGKILL while the cgroup's oom_kill counter rose
        (KILL, 2, 2, "killed"),  # SIGKILL, the counter did not move: a user or a scheduler
        (KILL, None, None, "killed"),  # no cgroup counter: no evidence of OOM
        (-signal.SIGTERM, 2, 3, "killed"),  # the OOM killer sends SIGKILL only
        (1, 2, 3, "failed"),
    ],
)
def test_oom_is_recorded_only_with_evidence(returncode, before, after, status):
    assert classify(returncode, before, after) == status


def test_the_cgroup_oom_counter_is_a_count_or_absent():
    kills = oom_kills()
    assert kills is None or kills >= 0
