"""The stream worker: batches of interactions/items/users from Kafka applied to Redis (effectively once),
then Feast's online rows, the event archive and feed triggers."""
