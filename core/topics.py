"""Kafka topic names. A prefix (settings.kafka.topic_prefix) namespaces them per deployment."""

from __future__ import annotations

from dataclasses import dataclass

INTERACTIONS = "interactions"
ITEMS = "items"
USERS = "users"
FEEDS = "feeds"
FEED_TRIGGERS = "feed-triggers"
IMPRESSIONS = "impressions"
DELETIONS = "deletions"  # core.deletions.Deletion, keyed by the subject's id (the eraser consumes it)
DLQ_SUFFIX = ".dlq"

INPUT_TOPICS = (INTERACTIONS, ITEMS, USERS)


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True)
class Topics:
    """Fully qualified topic names for one deployment."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def interactions(self) -> str:
        return self.name(INTERACTIONS)

    @property
    def items(self) -> str:
        return self.name(ITEMS)

    @property
    def users(self) -> str:
        return self.name(USERS)

    @property
    def feeds(self) -> str:
        return self.name(FEEDS)

    @property
    def feed_triggers(self) -> str:
        return self.name(FEED_TRIGGERS)

    @property
    def impressions(self) -> str:
        return self.name(IMPRESSIONS)

    @property
    def deletions(self) -> str:
        return self.name(DELETIONS)

    def dlq(self, base: str) -> str:
        return self.name(dlq(base))

    def all(self) -> list[str]:
        bases = [*INPUT_TOPICS, FEEDS, FEED_TRIGGERS, IMPRESSIONS, DELETIONS]
        return [self.name(b) for b in bases] + [self.dlq(b) for b in INPUT_TOPICS]
