"""PostgreSQL over TLS, for real: the test makes a CA and a server certificate, and starts a throwaway
PostgreSQL cluster (the machine's ``initdb``/``pg_ctl``, as an unprivileged user: initdb refuses root)
on a free port with ``ssl = on`` and a ``pg_hba.conf`` that admits TLS connections only (``hostssl``,
SCRAM password). The platform's SQL client (``MetadataStore`` over ``settings.database_url``) connects
with the settings alone (``database.sslmode = verify-full``, ``database.sslrootcert``, the password
from ``database.password_file``), migrates and records a job run over an encrypted connection, and is
refused without TLS (``sslmode = disable``), with another CA, and without the password."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.settings import Settings
from iokit import free_port
from services.metadata import MetadataStore
from tests.pki import make_pki

pytestmark = pytest.mark.integration
PASSWORD = "pg-t0p-s3cret-for-the-test"
USER = "streamrec"
SEARCH = ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]


def _binary(name: str) -> str | None:
    found = [str(Path(d) / name) for d in SEARCH if (Path(d) / name).is_file()]
    return found[0] if found else shutil.which(name)


def _as_server_user(owner: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


def _conf(data: Path, port: int, pki: dict[str, Path]) -> None:
    with (data / "postgresql.conf").open("a") as fh:
        fh.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n"
                 f"ssl = on\nssl_cert_file = '{pki['cert']}'\nssl_key_file = '{pki['key']}'\n"
                 "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n"
                 "max_connections = 20\n")
    # TLS or nothing: no plain "host" line, so a connection without TLS finds no entry
    (data / "pg_hba.conf").write_text(f"local all all trust\nhostssl all {USER} 127.0.0.1/32 scram-sha-256\n")


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[tuple[int, dict[str, Path], Path]]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    owner = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="sr-pgtls-"))
    data, pki = root / "data", make_pki(root, "pg")
    stranger = make_pki(root, "stranger")
    (root / "pw").write_text(PASSWORD)
    if owner is not None:
        uid, gid = pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid
        for path in (root, pki["cert"], pki["key"], root / "pw"):
            os.chown(path, uid, gid)
    root.chmod(0o755)
    pki["key"].chmod(0o600)
    port = free_port()
    subprocess.run(_as_server_user(owner, [initdb, "-D", str(data), "-U", USER, f"--pwfile={root / 'pw'}",
                                           "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                           "--no-sync"]), check=True, capture_output=True, timeout=60)
    _conf(data, port, pki)
    subprocess.run(_as_server_user(owner, [pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w",
                                           "-t", "30", "start"]), check=True, capture_output=True, timeout=60)
    try:
        yield port, {**pki, "stranger_ca": stranger["ca"]}, root / "pw"
    finally:
        subprocess.run(_as_server_user(owner, [pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _settings(port: int, **database: object) -> Settings:
    return Settings(database={"url": f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/postgres", **database})


def _refusal(settings: Settings) -> str:
    with pytest.raises(OperationalError) as info:
        MetadataStore(settings.database_url)
    return str(info.value)


def test_the_sql_client_connects_over_tls_with_the_settings_alone(tls_postgres):
    port, pki, password_file = tls_postgres
    settings = _settings(port, sslmode="verify-full", sslrootcert=pki["ca"], password_file=password_file)
    meta = MetadataStore(settings.database_url)  # migrates to head: every statement over TLS
    try:
        with meta.job("train", trigger="manual") as run:
            run.details["rows"] = 10
        assert [j.details for j in meta.jobs("train")] == [{"rows": 10}]
        with meta.engine.connect() as conn:
            ssl, version = conn.execute(text(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
        assert ssl is True and version.startswith("TLS"), (ssl, version)
    finally:
        meta.close()


def test_without_tls_another_ca_or_the_password_the_server_refuses(tls_postgres):
    port, pki, password_file = tls_postgres
    plain = _refusal(_settings(port, sslmode="disable", password_file=password_file))
    assert "no pg_hba.conf entry" in plain and "no encryption" in plain, plain
    other_ca = _refusal(_settings(port, sslmode="verify-full", sslrootcert=pki["stranger_ca"],
                                  password_file=password_file))
    assert "certificate verify failed" in other_ca, other_ca
    no_password = _refusal(_settings(port, sslmode="verify-full", sslrootcert=pki["ca"]))
    assert "password" in no_password, no_password
