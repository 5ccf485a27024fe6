"""streamrec-client: send validated events to a streamrec platform and read the feeds it makes.

    from streamrec.client import Interaction, Producer, StreamrecClient

Records (:class:`Interaction`, :class:`ItemUpsert`, :class:`UserUpsert`) are validated against the
platform's own JSON Schemas before they leave the process (:class:`InvalidEvent` names the field).
:class:`Producer` writes them to Kafka keyed as the platform partitions them; :class:`FeedConsumer`
iterates over published feeds; :class:`StreamrecClient` talks to the HTTP API.
"""

from streamrec.client.consumer import FeedConsumer
from streamrec.client.events import Event, Feed, FeedItem, Interaction, ItemUpsert, UserUpsert
from streamrec.client.http import ApiError, Similar, SimilarItem, StreamrecClient
from streamrec.client.producer import Producer
from streamrec.client.schemas import InvalidEvent, schema, validate

__all__ = ["ApiError", "Event", "Feed", "FeedConsumer", "FeedItem", "Interaction", "InvalidEvent",
           "ItemUpsert", "Producer", "Similar", "SimilarItem", "StreamrecClient", "UserUpsert", "schema",
           "validate"]
