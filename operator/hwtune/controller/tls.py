"""A self-signed certificate for the webhook server when none is mounted (local runs, tests).

kopf can make one itself, but through certbuilder/oscrypto, and oscrypto cannot parse the
version string of current OpenSSL 3.0.x releases (it fails at import). ``cryptography`` has no
such problem, so hwtune makes the certificate and hands kopf the files. The certificate is its
own CA: kopf puts it into the webhook configuration's caBundle, so the API server trusts exactly
this process's certificate and nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_self_signed_certificate"]


def write_self_signed_certificate(
    directory: Path, hostnames: Iterable[str], *, valid_days: int = 365,
) -> tuple[Path, Path]:
    """Write ``tls.crt`` and ``tls.key`` (mode 0600) into ``directory`` and return their paths.

    ``hostnames`` become the subject alternative names: IPs as IP SANs, the rest as DNS SANs
    (the API server checks the URL's host against them). Unspecified addresses such as 0.0.0.0
    are left out: nothing can call them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    names: list[str] = []
    for host in dict.fromkeys(hostnames):  # keep order, drop repeats
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(host)
        else:
            if not ip.is_unspecified:
                ips.append(ip)
    if not ips and not names:
        raise ValueError("hostnames: need at least one name or specified IP for the certificate")

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else str(ips[0])),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwtune operator (self-signed)"),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little in the past: the API server's clock may be slightly behind ours.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, key_cert_sign=True,
            content_commitment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
