"""The funnel: retrieve -> rank -> re-rank, its one feature set, and the jobs that train and evaluate it.

Transport-free and shared by every process (gorse keeps such logic in ``logics/``): the feed API and the
publisher serve with it over Redis and Feast; ``streamrec train`` and ``streamrec eval`` train and score
it over an in-process replay of the event log. It depends on the Protocols in ``core`` for state and
models, and on ``models`` for the learning algorithms.
"""
