"""Secrets come from the environment or from files, never from the settings file.

* :func:`refuse_file_secrets` fails start-up when the TOML holds a secret (a password field, or a URL
  with a password in it), naming the key and the two allowed places;
* each ``*_file`` setting names a file whose content (stripped) is the secret;
* the Redis ACL user and password, and the PostgreSQL password and TLS options, are put into the
  connection URL once, here, so every client of every process (redis-py, the raw RESP clients, the
  Feast connection string, SQLAlchemy) connects the same way. Print URLs with :func:`redacted`.

Example:
    >>> redacted("rediss://app:s3cret@redis:6380/0")
    'rediss://app:***@redis:6380/0'
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from core.settings import DatabaseSettings, KafkaSettings, RedisSettings

# section -> secret fields that may never be in the settings file
FILE_SECRETS = {"kafka": ("sasl_password",), "redis": ("password",), "database": ("password",)}
URL_FIELDS = {"redis": ("url",), "database": ("url",), "feast": ("registry_url",),
              "auth": ("control_database_url",)}


def refuse_file_secrets(data: dict[str, Any], source: Path | None) -> None:
    """Raise ConfigError naming every secret found in the parsed settings file ``data``."""
    from core.settings import ConfigError

    bad = [f"{sec}.{f}" for sec, fields in FILE_SECRETS.items() for f in fields
           if isinstance(data.get(sec), dict) and data[sec].get(f) is not None]
    bad += [f"{sec}.{f}" for sec, fields in URL_FIELDS.items() for f in fields
            if isinstance(data.get(sec), dict) and _has_password(data[sec].get(f))]
    if bad:
        env = ", ".join("STREAMREC_" + k.upper().replace(".", "__") for k in bad)
        raise ConfigError(bad, f"secrets in the settings file {source}: {', '.join(bad)}. Secrets come "
                          f"from the environment ({env}) or from a file (the *_file settings), never "
                          "from the settings file")


def _has_password(url: Any) -> bool:
    return isinstance(url, str) and urlsplit(url).password is not None


def read_secret(path: Path, key: str) -> SecretStr:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ValueError(f"{key}: {path} is empty")
    return SecretStr(text)


def redacted(url: str | None) -> str:
    """``url`` with its password replaced by ``***`` (for logs and status pages)."""
    if not url:
        return str(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def with_credentials(url: str, username: str | None, password: SecretStr | None) -> str:
    """``url`` with ``username:password@`` unless it already carries a password."""
    parts = urlsplit(url)
    if password is None or parts.password is not None:
        return url
    user = quote(username if username is not None else (parts.username or ""), safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password.get_secret_value(), safe='')}@{host}"))


def with_query(url: str, extra: dict[str, str]) -> str:
    """``url`` with ``extra`` query parameters added (an existing one is kept)."""
    if not extra:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query = {**extra, **query}
    return urlunsplit(parts._replace(query=urlencode(query)))


def resolve_kafka(k: KafkaSettings) -> KafkaSettings:
    if k.sasl_password_file is not None:
        k.sasl_password = read_secret(k.sasl_password_file, "kafka.sasl_password_file")
    if k.security_protocol.startswith("SASL") and not k.sasl_mechanism:
        raise ValueError(f"security_protocol {k.security_protocol} needs kafka.sasl_mechanism")
    return k


def resolve_redis(r: RedisSettings) -> RedisSettings:
    if r.password_file is not None:
        r.password = read_secret(r.password_file, "redis.password_file")
    if r.url is None:
        return r
    if r.username is not None and r.password is None and urlsplit(r.url).password is None:
        raise ValueError("redis.username without a password (set STREAMREC_REDIS__PASSWORD or "
                         "redis.password_file)")
    url = with_credentials(r.url, r.username, r.password)
    tls = {"ssl_ca_certs": r.tls_ca_file, "ssl_certfile": r.tls_cert_file, "ssl_keyfile": r.tls_key_file}
    if any(tls.values()) and not urlsplit(url).scheme.startswith("rediss"):
        raise ValueError("redis.tls_* files need a rediss:// (TLS) redis.url")
    r.url = with_query(url, {k: str(Path(v).resolve()) for k, v in tls.items() if v is not None})
    return r


def resolve_database(d: DatabaseSettings) -> DatabaseSettings:
    if d.password_file is not None:
        d.password = read_secret(d.password_file, "database.password_file")
    if d.url is None:
        return d
    files = {"sslrootcert": d.sslrootcert, "sslcert": d.sslcert, "sslkey": d.sslkey}
    tls = {k: str(Path(v).resolve()) for k, v in files.items() if v is not None}
    if d.sslmode is not None:
        tls["sslmode"] = d.sslmode
    if tls and not d.url.startswith("postgresql"):
        raise ValueError("database.ssl* settings apply to a postgresql:// database.url only")
    d.url = with_query(with_credentials(d.url, None, d.password), tls)
    return d


def ssl_context(cafile: Path | None, certfile: Path | None = None, keyfile: Path | None = None,
                check_hostname: bool = True) -> ssl.SSLContext:
    """A client TLS context: verify the server against ``cafile`` (or the system CAs)."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.check_hostname = check_hostname
    if certfile is not None:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


def kafka_options(k: KafkaSettings, aio: bool = False) -> dict[str, Any]:
    """Security options of a Kafka client: kafka-python's names, or aiokafka's (``aio``: an
    ``ssl_context`` instead of files). Every Kafka client of every process takes these."""
    opts: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        opts.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                    sasl_plain_password=k.sasl_password.get_secret_value() if k.sasl_password else None)
    if "SSL" not in k.security_protocol:
        return opts
    if aio:
        opts["ssl_context"] = ssl_context(k.ssl_cafile, k.ssl_certfile, k.ssl_keyfile, k.ssl_check_hostname)
        return opts
    files = {"ssl_cafile": k.ssl_cafile, "ssl_certfile": k.ssl_certfile, "ssl_keyfile": k.ssl_keyfile}
    opts.update({key: str(v) for key, v in files.items() if v is not None})
    opts["ssl_check_hostname"] = k.ssl_check_hostname
    return opts


_LIBRDKAFKA_NAMES = {"security_protocol": "security.protocol", "sasl_mechanism": "sasl.mechanism",
                     "sasl_plain_username": "sasl.username", "sasl_plain_password": "sasl.password",
                     "ssl_cafile": "ssl.ca.location", "ssl_certfile": "ssl.certificate.location",
                     "ssl_keyfile": "ssl.key.location"}


def librdkafka_options(k: KafkaSettings) -> dict[str, Any]:
    """:func:`kafka_options` under librdkafka's names (confluent-kafka's config keys), unset ones left out."""
    opts = kafka_options(k)
    out = {_LIBRDKAFKA_NAMES[key]: v for key, v in opts.items() if key in _LIBRDKAFKA_NAMES and v is not None}
    if "ssl_check_hostname" in opts:
        out["ssl.endpoint.identification.algorithm"] = "https" if opts["ssl_check_hostname"] else "none"
    return out
