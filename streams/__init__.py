"""The stream worker: faust agents over interactions/items/users feeding Redis, Feast and the archive."""
