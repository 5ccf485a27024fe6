"""Test certificates: a CA and a server certificate for 127.0.0.1/localhost signed by it, made with the
``cryptography`` package (the TLS tests of Redis and PostgreSQL start real servers with them)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(d: Path, name: str) -> dict[str, Path]:
    """A CA, and a server certificate for 127.0.0.1/localhost signed by it (PEM files under ``d``)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    out = {"ca": d / f"{name}-ca.pem", "cert": d / f"{name}-server.pem", "key": d / f"{name}-server.key"}
    out["ca"].write_bytes(_cert(f"{name} CA", ca_key, f"{name} CA", ca_key, True)
                          .public_bytes(serialization.Encoding.PEM))
    out["cert"].write_bytes(_cert("127.0.0.1", key, f"{name} CA", ca_key, False)
                            .public_bytes(serialization.Encoding.PEM))
    out["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return out
