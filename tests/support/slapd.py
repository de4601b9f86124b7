"""A private OpenLDAP `slapd` for the LDAP auth tests: LDAPS, StartTLS and plain LDAP on loopback.

Everything lives in one folder: a CA and a server certificate made for the run, a slapd.conf
(mdb database under dc=example,dc=test, the memberof overlay), the database and the log. slapd
runs in the foreground (`-d 0`) as a child of the test, on two free ports: ldap:// (plain and
StartTLS) and ldaps:// (also on 127.0.0.2, an address the certificate does not name). It is
seeded over LDAP as its root DN, so that the memberof overlay sees the groups being made, and
`add_member` / `remove_member` change a group while it runs.
The machine's own slapd (Debian's package) is never used or started.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import backends
from tests.support.processes import free_port

SLAPD = "/usr/sbin/slapd"
MODULES = "/usr/lib/ldap"
SCHEMAS = "/etc/ldap/schema"

BASE_DN = "dc=example,dc=test"
PEOPLE = f"ou=people,{BASE_DN}"
CONTRACTORS = f"ou=contractors,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
SEARCH_DN = f"cn=wharf-search,ou=service,{BASE_DN}"
SEARCH_PASSWORD = "Search-pass-1"


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    cn: str
    mail: str
    ou: str = PEOPLE

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{self.ou}"


# The seeded directory. `twin` exists twice (people and contractors): a search for it must refuse.
PEOPLE_SEED = (
    Person("alice", "Alice-pass-1", "Alice Liddell", "alice@example.test"),
    Person("bob", "Bob-pass-1", "Bob Builder", "bob@example.test"),
    Person("carol", "Carol-pass-1", "Carol Danvers", "carol@example.test"),
    Person("twin", "Twin-pass-1", "Twin One", "twin1@example.test"),
    Person("twin", "Twin-pass-2", "Twin Two", "twin2@example.test", ou=CONTRACTORS),
    Person("dave", "Dave-pass-1", "Dave Contractor", "dave@example.test", ou=CONTRACTORS),
)
USERS = {p.uid: p for p in PEOPLE_SEED if p.uid != "twin"}
# groupOfNames by cn -> member uids; "ops" is a groupOfUniqueNames.
GROUPS_SEED = {"developers": ("alice", "bob"), "admins": ("alice",), "empty": ()}
UNIQUE_GROUPS_SEED = {"ops": ("carol",)}


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def ssha(password: str) -> str:
    """RFC 2307 {SSHA}: base64(sha1(password + salt) + salt), the hash slapd checks binds against."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - the scheme slapd knows
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class Pki:
    ca_pem: str  # the CA that signed slapd's certificate
    other_ca_pem: str  # a CA that did not: verification against it must fail
    ca_file: Path
    cert_file: Path
    key_file: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(folder: Path) -> Pki:
    """A CA, slapd's certificate for 127.0.0.1 and localhost signed by it, and an unrelated CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _ca("Wharf test LDAP CA", now)
    _, other_cert = _ca("Some other CA", now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(_key_pem(key))
    key_file.chmod(0o600)
    return Pki(
        ca_cert.public_bytes(pem).decode(),
        other_cert.public_bytes(pem).decode(),
        ca_file,
        cert_file,
        key_file,
    )


def _config(folder: Path, pki: Pki, root_password: str) -> str:
    schemas = "".join(
        f"include {SCHEMAS}/{name}.schema\n" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return (
        f"{schemas}"
        f"modulepath {MODULES}\n"
        "moduleload back_mdb\n"
        "moduleload memberof\n"
        f"pidfile {folder / 'slapd.pid'}\n"
        f"argsfile {folder / 'slapd.args'}\n"
        f"TLSCACertificateFile {pki.ca_file}\n"
        f"TLSCertificateFile {pki.cert_file}\n"
        f"TLSCertificateKeyFile {pki.key_file}\n"
        "database mdb\n"
        "maxsize 67108864\n"
        f'suffix "{BASE_DN}"\n'
        f'rootdn "{ROOT_DN}"\n'
        f"rootpw {ssha(root_password)}\n"
        f"directory {folder / 'data'}\n"
        # Passwords: only binds may use them. Everything else: readable by anyone, anonymous
        # included, so that an empty ldap_search_dn (anonymous search) can be tested.
        "access to attrs=userPassword by anonymous auth by self auth by * none\n"
        "access to * by * read\n"
        "overlay memberof\n"
        "memberof-group-oc groupOfNames\n"
        "memberof-member-ad member\n"
        "memberof-memberof-ad memberOf\n"
        "memberof-refint true\n"
    )


@dataclass
class Slapd:
    folder: Path
    pki: Pki
    port: int  # ldap:// (plain and StartTLS)
    tls_port: int  # ldaps://
    process: subprocess.Popen[bytes]
    root_password: str
    log: Path
    _stopped: bool = field(default=False, init=False)

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def misnamed_ldaps_url(self) -> str:
        """The same LDAPS port on an address its certificate does not name."""
        return f"ldaps://127.0.0.2:{self.tls_port}"

    def configuration(self, transport: str = "ldaps") -> dict[str, Any]:
        """Runtime settings (Harbor's `ldap_*` keys and Wharf's) for this directory, over
        `ldaps`, `starttls` or `plain` LDAP, verifying its certificate against its CA."""
        return {
            "ldap_url": self.ldaps_url if transport == "ldaps" else self.ldap_url,
            "ldap_starttls": transport == "starttls",
            "ldap_ca_certificate": self.pki.ca_pem,
            "ldap_verify_cert": True,
            "ldap_search_dn": SEARCH_DN,
            "ldap_search_password": SEARCH_PASSWORD,
            "ldap_base_dn": BASE_DN,
            "ldap_uid": "uid",
            "ldap_filter": "(objectClass=inetOrgPerson)",
            "ldap_scope": 2,
            "ldap_timeout": 3,
            "ldap_group_base_dn": GROUPS,
            "ldap_group_search_filter": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            "ldap_group_attribute_name": "cn",
            "ldap_group_search_scope": 2,
            "ldap_group_admin_dn": group_dn("admins"),
            "ldap_group_membership_attribute": "memberof",
            "ldap_email_attribute": "mail",
            "ldap_realname_attribute": "cn",
        }

    @contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        """A connection bound as the root DN over plain LDAP (loopback only)."""
        server = ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(
            server, ROOT_DN, self.root_password, receive_timeout=10, raise_exceptions=True
        )
        try:
            conn.bind()
            yield conn
        finally:
            conn.unbind()
            if conn.socket is not None:  # ldap3 leaves it open when connecting failed
                conn.socket.close()

    def add_person(self, person: Person) -> None:
        with self.admin() as conn:
            conn.add(
                person.dn,
                ["inetOrgPerson"],
                {
                    "uid": person.uid,
                    "cn": person.cn,
                    "sn": person.cn.split()[-1],
                    "mail": person.mail,
                    "userPassword": ssha(person.password),
                },
            )

    def put_person(self, person: Person) -> None:
        """Add the person, replacing an entry of theirs already there (a new password)."""
        self.delete_person(person.dn)
        self.add_person(person)

    def delete_person(self, dn: str) -> None:
        with self.admin() as conn, suppress(ldap3.core.exceptions.LDAPNoSuchObjectResult):
            conn.delete(dn)

    def add_member(self, group: str, user_dn: str) -> None:
        with self.admin() as conn:
            conn.modify(group_dn(group), {"member": [(ldap3.MODIFY_ADD, [user_dn])]})

    def remove_member(self, group: str, user_dn: str) -> None:
        with self.admin() as conn:
            conn.modify(group_dn(group), {"member": [(ldap3.MODIFY_DELETE, [user_dn])]})

    def freeze(self) -> None:
        """SIGSTOP: the ports still accept connections (the kernel's backlog), nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen slapd cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _seed(slapd: Slapd) -> None:
    with slapd.admin() as conn:
        conn.add(BASE_DN, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        for ou in ("people", "contractors", "groups", "service"):
            conn.add(f"ou={ou},{BASE_DN}", ["organizationalUnit"], {"ou": ou})
        conn.add(
            SEARCH_DN,
            ["organizationalRole", "simpleSecurityObject"],
            {"cn": "wharf-search", "userPassword": ssha(SEARCH_PASSWORD)},
        )
    for person in PEOPLE_SEED:
        slapd.add_person(person)
    with slapd.admin() as conn:
        for name, uids in GROUPS_SEED.items():
            # groupOfNames needs at least one member: an empty group lists the base DN, as is usual.
            members = [USERS[uid].dn for uid in uids] or [BASE_DN]
            conn.add(group_dn(name), ["groupOfNames"], {"cn": name, "member": members})
        for name, uids in UNIQUE_GROUPS_SEED.items():
            conn.add(
                group_dn(name),
                ["groupOfUniqueNames"],
                {"cn": name, "uniqueMember": [USERS[u].dn for u in uids]},
            )


def _wait_listening(slapd: Slapd, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if slapd.process.poll() is not None:
            raise RuntimeError(f"slapd exited {slapd.process.returncode}:\n{slapd.tail()}")
        try:
            with slapd.admin() as conn:
                conn.search(BASE_DN, "(objectClass=*)", ldap3.BASE)  # noSuchObject before seeding: fine
            return
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return
        except (OSError, ldap3.core.exceptions.LDAPException):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"slapd did not answer on 127.0.0.1:{slapd.port}:\n{slapd.tail()}"
                ) from None
            time.sleep(0.05)


@contextmanager
def running_slapd(folder: Path) -> Iterator[Slapd]:
    """A seeded slapd in `folder`, stopped (and the folder's data left to tmp_path) at the end."""
    if not Path(SLAPD).exists() or not Path(MODULES, "back_mdb.so").exists():
        backends.unavailable("slapd", FileNotFoundError(f"{SLAPD} or its modules missing (Debian: slapd)"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    pki = make_pki(folder)
    root_password = base64.urlsafe_b64encode(os.urandom(12)).decode()
    config = folder / "slapd.conf"
    config.write_text(_config(folder, pki, root_password))
    port, tls_port = free_port(), free_port()
    log = folder / "slapd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                SLAPD,
                "-d",
                "0",
                "-f",
                str(config),
                "-h",
                f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/ ldaps://127.0.0.2:{tls_port}/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    slapd = Slapd(folder, pki, port, tls_port, process, root_password, log)
    try:
        _wait_listening(slapd)
        _seed(slapd)
        yield slapd
    finally:
        slapd.stop()
        shutil.rmtree(folder / "data", ignore_errors=True)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    return free_port()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a hung directory."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
