"""streamrec's own online state in Redis: dedupe, popularity, co-visitation, bandits, users, catalog.

Writers (used by the stream worker) live in :mod:`.writer`; the read APIs for serving in :mod:`.readers`.
Every key starts with ``settings.redis.key_prefix`` (see :class:`.keys.Keys`).
"""
