"""Topic and consumer-group names: one place, derived from the topic prefix.

<prefix>.events                  sync events (Avro), keyed by product/collection id
<prefix>.subscriptions           compacted, keyed by webhook id; a tombstone deletes
<prefix>.deliveries.<webhook>    one topic per endpoint, keyed by product id
<prefix>.retry.<n>               retry tier n (n = 1..len(delays)), one fixed delay each
<prefix>.deadletters             what failed for good, with its history and reason
<prefix>.attempts                every finished POST, keyed by webhook, for the admin service
<prefix>.accounts                compacted, keyed by account id
<prefix>.api-keys                compacted, keyed by key id (hashes only; revoked keys kept)
<prefix>.audit                   every change, keyed by account id, time-limited retention
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def subscriptions(self) -> str:
        return f"{self.prefix}.subscriptions"

    @property
    def deadletters(self) -> str:
        return f"{self.prefix}.deadletters"

    @property
    def attempts(self) -> str:
        return f"{self.prefix}.attempts"

    @property
    def accounts(self) -> str:
        return f"{self.prefix}.accounts"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}.api-keys"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    def delivery(self, webhook_id: str) -> str:
        return f"{self.prefix}.deliveries.{webhook_id}"

    @property
    def delivery_pattern(self) -> str:
        # librdkafka treats a subscription starting with "^" as a regex.
        return "^" + re.escape(f"{self.prefix}.deliveries.") + ".+"

    def webhook_of(self, delivery_topic: str) -> str:
        return delivery_topic.removeprefix(f"{self.prefix}.deliveries.")

    def retry(self, tier: int) -> str:
        return f"{self.prefix}.retry.{tier}"

    def retry_tier_of(self, topic: str) -> int:
        return int(topic.rsplit(".", 1)[1])

    def group(self, role: str) -> str:
        return f"{self.prefix}.{role}"
