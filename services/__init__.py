"""The processes: feed API, publisher, trainer, indexer, drift monitor, scheduler, CLI."""
