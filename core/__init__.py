"""Contracts shared by every layer: event schemas, names, settings and Protocols. No I/O."""
