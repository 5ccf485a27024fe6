"""streamrec's own online state in Redis: dedupe, popularity, co-visitation, bandits, users, catalog.

Writers (used by the stream worker) live in :mod:`.writer`; reads (``core.online.OnlineState``) in
:mod:`.redis_state`, and in process, with the worker's plans applied to dicts, in :mod:`.memory_state`.
Every key starts with ``settings.redis.key_prefix`` (see :class:`.keys.Keys`).
"""
