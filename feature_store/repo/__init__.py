"""Feast definitions only (``feast apply`` imports every .py here): entities, views, services."""
