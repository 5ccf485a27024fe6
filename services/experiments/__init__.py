"""Experiment reports and off-policy evaluation over the platform's log (impressions + interactions)."""
