"""Trainer: point-in-time data from the archive, fit, holdout evaluation, promotion gate."""
