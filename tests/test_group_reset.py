"""Resetting the stream job's consumer group on a broker that has just started: the group coordinator
is not there yet (NOT_COORDINATOR, seen on the demo's first run after a fresh `infra/up.sh`), which is
transient and waited out; any other error is one line. The broker's state cannot be produced on demand,
so the admin client's answers are scripted here."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from featurestore.engines.flink import offsets as flink_offsets
from featurestore.errors import InfraError


class _Future:
    def __init__(self, error):
        self.error = error

    def result(self, timeout=None):
        if self.error is not None:
            raise KafkaException(KafkaError(self.error))


def _admin(answers):
    calls = []

    class Admin:
        def __init__(self, conf):
            pass

        def delete_consumer_groups(self, groups, request_timeout=None):
            calls.append(groups)
            return {groups[0]: _Future(answers[min(len(calls), len(answers)) - 1])}

    return Admin, calls


def test_a_moving_coordinator_is_waited_out(monkeypatch):
    admin, calls = _admin([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, None])
    monkeypatch.setattr("confluent_kafka.admin.AdminClient", admin)
    monkeypatch.setattr(flink_offsets.time, "sleep", lambda s: None)
    flink_offsets.forget_group("127.0.0.1:1", "g", timeout=1)
    assert len(calls) == 3


def test_a_group_that_does_not_exist_is_fine_and_other_errors_are_one_line(monkeypatch):
    admin, calls = _admin([KafkaError.GROUP_ID_NOT_FOUND])
    monkeypatch.setattr("confluent_kafka.admin.AdminClient", admin)
    flink_offsets.forget_group("127.0.0.1:1", "g", timeout=1)
    admin, calls = _admin([KafkaError.GROUP_AUTHORIZATION_FAILED])
    monkeypatch.setattr("confluent_kafka.admin.AdminClient", admin)
    with pytest.raises(InfraError, match=r"^cannot reset the consumer group g at 127\.0\.0\.1:1: "):
        flink_offsets.forget_group("127.0.0.1:1", "g", timeout=1)
    assert len(calls) == 1
