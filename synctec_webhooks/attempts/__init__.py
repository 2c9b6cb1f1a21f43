"""Attempts: one record per finished POST, for people (the admin's recent attempts and
endpoint health), not part of the delivery guarantee.

`records` (re-exported here) builds them, pure; `log` follows the attempts topic;
`endpoint_health` judges from them which webhooks to disable.
"""

from synctec_webhooks.attempts.records import DELIVERED, RETRY, attempt_record, failed_for_good

__all__ = ["DELIVERED", "RETRY", "attempt_record", "failed_for_good"]
