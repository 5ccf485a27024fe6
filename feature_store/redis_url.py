"""``redis.url``: one Redis, or a Redis Cluster chosen by the URL scheme.

* ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS): one server;
* ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``): a Redis
  Cluster, found from any of the listed nodes (database 0 only, as Redis Cluster has no others).

Every client of the online state (the worker's writer, the serving reader, the Feast fast reader
and Feast itself) builds its connection from :func:`parse`.

Example:
    >>> parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").nodes
    [('10.0.0.1', 7000), ('10.0.0.2', 7000)]
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from core.secrets import ssl_context
from core.settings import ConfigError

TLS_QUERY = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
SCHEMES = {"redis": (False, False), "rediss": (False, True),
           "redis+cluster": (True, False), "rediss+cluster": (True, True)}


@dataclass(frozen=True)
class RedisEndpoint:
    nodes: list[tuple[str, int]]
    cluster: bool
    tls: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = None
    # TLS files, from the URL's query (``?ssl_ca_certs=...&ssl_certfile=...&ssl_keyfile=...``, what
    # core.secrets puts there from redis.tls_*): every client verifies the server with them.
    tls_files: tuple[tuple[str, str], ...] = ()

    @property
    def single_url(self) -> str:
        """A plain ``redis://`` URL of the first node (what redis-py's from_url takes)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        host, port = self.nodes[0]
        query = f"?{urlencode(self.tls_files)}" if self.tls_files else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{port}/{self.db}{query}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context of a ``rediss://`` endpoint (None without TLS)."""
        if not self.tls:
            return None
        files = dict(self.tls_files)
        path = {k: Path(v) if v else None for k, v in
                (("ca", files.get("ssl_ca_certs")), ("cert", files.get("ssl_certfile")),
                 ("key", files.get("ssl_keyfile")))}
        return ssl_context(path["ca"], path["cert"], path["key"])

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's keyword arguments for the TLS files."""
        return dict(self.tls_files) if self.tls else {}


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(["redis.url"], f"redis.url {url!r}: {why}; expected redis://host:port/db or "
                       "redis+cluster://host:port[,host:port...]")


def parse(url: str) -> RedisEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {parts.scheme!r}")
    cluster, tls = SCHEMES[parts.scheme]
    auth, _, hosts = parts.netloc.rpartition("@")
    user, _, password = auth.partition(":")
    nodes = [_node(url, h) for h in hosts.split(",") if h]
    if not nodes or (len(nodes) > 1 and not cluster):
        raise _bad(url, "one host:port (a cluster may list several)")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit() or (cluster and db_text != "0"):
        raise _bad(url, "the database must be a number (0 on a cluster)")
    tls_files = tuple((k, v) for k, v in parse_qsl(parts.query) if k in TLS_QUERY)
    return RedisEndpoint(nodes, cluster, tls, int(db_text), unquote(user) or None,
                         unquote(password) if auth else None, tls_files)


def _node(url: str, hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        if ":" not in hostport and hostport:
            return hostport, 6379
        raise _bad(url, f"bad host:port {hostport!r}")
    return host.strip("[]"), int(port)
