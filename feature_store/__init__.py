"""Feast repo, online state in Redis, readers and writers, the offline event archive."""
