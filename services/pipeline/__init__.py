"""Transport wiring of the funnel for the serving processes: Redis state, the Feast reader, hot-swapped
models (``build``), artifact loaders and the impression record. The funnel itself is ``funnel``."""
