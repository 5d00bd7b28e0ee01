"""TLS material for the broker: a fleet CA and per-host server certificates.

Built with ``cryptography`` (already required by paramiko, hence by fabric).
Keys are ECDSA P-256: small, fast, and accepted by Mosquitto 2.0 with OpenSSL
1.1 and 3. Only the CA certificate is handed to clients; keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hatchery.errors import UsageError
from hatchery.security.passwords import write_private

CA_DAYS = 3650
SERVER_DAYS = 397       # what browsers accept; short enough that renewal stays practised
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def make_ca(common_name: str = "hatchery fleet CA", days: int = CA_DAYS) -> CertPair:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (_base(name, name, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_key_usage(cert_sign=True), critical=True))
    return _pair(builder.sign(key, hashes.SHA256()), key)


def make_server_cert(ca: CertPair, host: str, *, dns_names: Iterable[str] = (),
                     ips: Iterable[str] = (), days: int = SERVER_DAYS) -> CertPair:
    """A server certificate for ``host`` with SANs for ``host``, ``dns_names`` and ``ips``."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    builder = (_base(subject, ca.cert.subject, key.public_key(), days)
               .add_extension(x509.SubjectAlternativeName(san_entries(host, dns_names, ips)),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(cert_sign=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False))
    return _pair(builder.sign(ca_key, hashes.SHA256()), key)


def san_entries(host: str, dns_names: Iterable[str] = (), ips: Iterable[str] = ()) -> list:
    """SAN entries: a host that parses as an IP becomes an IP entry, else a DNS name."""
    names, addresses = [], []
    for value in [host, *dns_names, *ips]:
        try:
            addresses.append(ipaddress.ip_address(value))
        except ValueError:
            names.append(_check_dns_name(value))
    return ([x509.DNSName(n) for n in dict.fromkeys(names)]
            + [x509.IPAddress(a) for a in dict.fromkeys(addresses)])


def _check_dns_name(name: str) -> str:
    labels = name.rstrip(".").split(".")
    if not name or any(not label or len(label) > 63 for label in labels) or len(name) > 253:
        raise UsageError(f"{name!r} is neither an IP address nor a DNS name",
                         "list the broker's DNS names and IP addresses in the inventory")
    return name


def _base(subject, issuer, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            # a little back-dating tolerates hosts whose clocks run slightly behind
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=not cert_sign, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _pair(cert: x509.Certificate, key) -> CertPair:
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


# --- on disk and planning ---------------------------------------------------

def write_pair(pair: CertPair, cert_path: Path, key_path: Path) -> None:
    """Certificate world-readable (it is public), key 0600."""
    Path(cert_path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    Path(cert_path).write_bytes(pair.cert_pem)
    write_private(Path(key_path), pair.key_pem.decode())


def read_pair(cert_path: Path, key_path: Path) -> CertPair | None:
    """The pair on disk, or None when either file is missing."""
    try:
        return CertPair(Path(cert_path).read_bytes(), Path(key_path).read_bytes())
    except FileNotFoundError:
        return None


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when ``ca_cert`` signed ``cert`` (the signature, not just the names)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def cert_sans(cert_pem: bytes) -> set:
    """The certificate's SANs as strings (DNS names and IP addresses)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(n) for n in san.get_values_for_type(x509.DNSName)}
            | {str(a) for a in san.get_values_for_type(x509.IPAddress)})


def renewal_reason(server: CertPair | None, ca: CertPair, host: str, *,
                   dns_names: Iterable[str] = (), ips: Iterable[str] = (),
                   now: dt.datetime | None = None) -> str:
    """Why the server certificate must be (re)issued; '' when it is fine."""
    if server is None:
        return "no certificate yet"
    cert, now = server.cert, now or dt.datetime.now(dt.timezone.utc)
    if not issued_by(cert, ca.cert):
        return "not issued by the fleet CA"
    wanted = {str(e.value) for e in san_entries(host, dns_names, ips)}
    if cert_sans(server.cert_pem) != wanted:
        return "names changed"
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"expires within {RENEW_BEFORE_DAYS} days"
    return ""
