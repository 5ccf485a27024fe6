"""Tenants: one deployment, several namespaces. A tenant's settings are the deployment's settings with
every namespace moved under the tenant's name:

* Kafka topics: ``<topic_prefix><tenant>.<topic>`` (and the consumer groups ``<group>-<tenant>``);
* Redis keys: ``<key_prefix><tenant>:...``; the Feast project ``<project>_<tenant>``;
* files (archive, offline parquet, local artifacts and models, the SQLite registry):
  ``<data_dir>/tenants/<tenant>``; an explicit ``artifacts.url`` gets ``/tenants/<tenant>``; an
  explicit PostgreSQL ``database.url`` gets the schema ``tenant_<tenant>`` (its ``search_path``).

The tenant ``default`` is the deployment's own namespace, unchanged (so a single-tenant deployment
keeps its topics, keys and files). Keys and the tenant list live in the control database
(``auth.control_database_url``: the default tenant's database).

Example:
    >>> from core.settings import Settings
    >>> s = scoped(Settings(), "acme")
    >>> s.kafka.topic_prefix, s.redis.key_prefix, s.feast.project
    ('acme.', 'sr:acme:', 'streamrec_acme')
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from core.secrets import with_query

if TYPE_CHECKING:
    from core.settings import Settings

DEFAULT = "default"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"tenant name {name!r}: lowercase letters, digits and _, starting with a letter, "
                         "at most 31 characters")
    return name


def control_url(settings: Settings) -> str:
    """The database holding API keys and tenants (shared by every tenant)."""
    return settings.auth.control_database_url or settings.database_url


def scoped(base: Settings, tenant: str) -> Settings:
    """``base`` (the deployment's settings) as tenant ``tenant`` sees them."""
    check_name(tenant)
    if base.tenancy.applied:
        if base.tenancy.tenant != tenant:
            raise ValueError(f"settings already scoped to tenant {base.tenancy.tenant!r}, not {tenant!r}")
        return base
    auth = base.auth.model_copy(update={"control_database_url": control_url(base)})
    tenancy = base.tenancy.model_copy(update={"tenant": tenant, "applied": True})
    if tenant == DEFAULT:
        return base.model_copy(update={"auth": auth, "tenancy": tenancy})
    k, r, f, w, p = base.kafka, base.redis, base.feast, base.worker, base.publisher
    data_dir = base.data_dir / "tenants" / tenant
    update: dict[str, Any] = {
        "data_dir": data_dir, "auth": auth, "tenancy": tenancy,
        "kafka": k.model_copy(update={"topic_prefix": f"{k.topic_prefix}{tenant}."}),
        "redis": r.model_copy(update={"key_prefix": f"{r.key_prefix}{tenant}:"}),
        "feast": f.model_copy(update={"project": f"{f.project}_{tenant}"}),
        "worker": w.model_copy(update={"group_id": f"{w.group_id}-{tenant}"}),
        "publisher": p.model_copy(update={"group_id": f"{p.group_id}-{tenant}"}),
        "eraser": base.eraser.model_copy(update={"group_id": f"{base.eraser.group_id}-{tenant}"}),
        "database": base.database.model_copy(update={"url": _database_url(base.database.url, tenant)}),
    }
    if base.artifacts.url:
        update["artifacts"] = base.artifacts.model_copy(
            update={"url": f"{base.artifacts.url.rstrip('/')}/tenants/{tenant}"})
    return base.model_copy(update=update)


def schema(tenant: str) -> str:
    return f"tenant_{check_name(tenant)}"


def _database_url(url: str | None, tenant: str) -> str | None:
    if url is None:
        return None  # SQLite under the tenant's data_dir
    if url.startswith("sqlite:///"):
        stem, dot, ext = url.rpartition(".")
        return f"{stem}_{tenant}.{ext}" if dot and "/" not in ext else f"{url}_{tenant}"
    if url.startswith("postgresql"):
        return with_query(url, {"options": f"-csearch_path={schema(tenant)}"})
    raise ValueError(f"database.url {url.split(':', 1)[0]}: tenants need SQLite or PostgreSQL")
