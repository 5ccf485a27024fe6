"""Kafka edges: the faust app, its agents, and Kafka clients."""
