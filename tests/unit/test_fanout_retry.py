"""The fan-out calls a transactional step again on a retriable error, and only then."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from synctec_webhooks.consumers.fanout.worker import retry_retriable


class Flaky:
    """Fails with `errors` in turn, then succeeds."""

    def __init__(self, *errors: KafkaError) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, *args: object) -> None:
        self.calls.append(args)
        if self.errors:
            raise KafkaException(self.errors.pop(0))


def _concurrent() -> KafkaError:
    return KafkaError(
        KafkaError.CONCURRENT_TRANSACTIONS, "markers still being written", retriable=True
    )


def test_retriable_errors_are_called_again_with_the_same_arguments() -> None:
    step = Flaky(_concurrent(), _concurrent())
    retry_retriable(step, "offsets", "metadata", first_wait=0.001)
    assert step.calls == [("offsets", "metadata")] * 3


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(
            KafkaError.INVALID_TXN_STATE, "abortable", txn_requires_abort=True, retriable=True
        ),
        KafkaError(KafkaError._FENCED, "fenced", fatal=True),
        KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "not retriable"),
    ],
)
def test_abortable_fatal_and_other_errors_are_raised_at_once(error: KafkaError) -> None:
    step = Flaky(error)
    with pytest.raises(KafkaException) as raised:
        retry_retriable(step, first_wait=0.001)
    assert raised.value.args[0] is error
    assert len(step.calls) == 1


def test_a_step_that_keeps_failing_is_given_up_after_the_deadline() -> None:
    step = Flaky(*[_concurrent() for _ in range(1000)])
    with pytest.raises(KafkaException):
        retry_retriable(step, give_up_after=0.05, first_wait=0.01)
    assert 2 <= len(step.calls) < 20
