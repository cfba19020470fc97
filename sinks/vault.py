"""The key vault: one data key per person, wrapped by a master key, in the ledger's database.

Envelope encryption (README: personal data): a person's raw values are sealed with their own
random data key (AES-256-GCM), and the data key is stored only wrapped by a master key from the
secrets. Destroying a person's data keys (:meth:`KeyVault.forget`) makes every copy of what was
sealed with them unreadable — in ClickHouse parts not yet merged away, in Kafka records, in
backups — which is how a deletion reaches places nobody can rewrite.

The vault lives beside the ledger (table ``person_keys``, schemas/ddl.sql), so the embedded
runner, every streaming worker and ``tuike forget`` see the same keys. A key is written before
anything sealed with it can become durable (:meth:`KeyVault.flush`); two workers meeting the same
new person each make a key, which is harmless: a sealed value names the key it was sealed with.
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schemas.analytics import quote
from sinks.errors import LedgerError
from sinks.reader import QueryResult
from sinks.writer import Batch

NONCE = 12


class SqlLedger(Protocol):
    def query(self, sql: str) -> QueryResult: ...

    def write(self, batch: Batch) -> None: ...


class VaultError(LedgerError):
    """A key that cannot be unwrapped or found; the message says which and what to check."""


@dataclass(frozen=True)
class MasterKey:
    """A master key derived from a secret of at least 32 characters; ``id`` names it in the vault."""

    key: bytes
    id: str

    @classmethod
    def from_secret(cls, secret: str) -> "MasterKey":
        if len(secret) < 32:
            raise ValueError("a master key must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tuike master key").derive(secret.encode())
        return cls(key, hashlib.sha256(key).hexdigest()[:12])


@dataclass(frozen=True)
class DataKey:
    owner: str
    key_id: str
    key: bytes


@dataclass
class KeyVault:
    """Data keys by owner (a person's pseudonym, or ``dead-letters:YYYY-MM``).

    ``masters[0]`` wraps new keys; the others only unwrap keys wrapped before a rotation."""

    ledger: SqlLedger
    masters: list[MasterKey]
    _current: dict[str, DataKey] = field(default_factory=dict)  # owner -> the key this process seals with
    _pending: list[DataKey] = field(default_factory=list)
    _forgotten: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.masters:
            raise ValueError("privacy.master_keys: at least one master key is needed")
        self.refresh()

    def refresh(self) -> None:
        """Reload who has been forgotten (``tuike forget`` may have run in another process)."""
        self._forgotten = {r[0] for r in self.ledger.query("SELECT owner FROM forgotten_people").rows}
        self._current = {o: k for o, k in self._current.items() if o not in self._forgotten}

    def is_forgotten(self, owner: str) -> bool:
        return owner in self._forgotten

    def key_for(self, owner: str) -> DataKey:
        """The key to seal ``owner``'s values with: this process's, made on first use."""
        key = self._current.get(owner)
        if key is None:
            key = self._current[owner] = DataKey(owner, os.urandom(8).hex(), AESGCM.generate_key(256))
            self._pending.append(key)
        return key

    def flush(self) -> None:
        """Write the keys made since the last flush; call it before what they sealed is written. The
        streaming worker seals on its event loop and flushes on its one ledger thread."""
        pending, self._pending = self._pending, []  # keys made meanwhile (another thread) wait for the next flush
        if not pending:
            return
        master = self.masters[0]
        try:
            self._insert([(k.owner, k.key_id, self._wrap(master, k), master.id) for k in pending], int(time.time()))
        except BaseException:
            self._pending[:0] = pending
            raise

    def _insert(self, rows: list[tuple[str, str, str, str]], version: int) -> None:
        """Through the ledger's batch insert (Arrow into chDB, columns to the server)."""
        names = ("owner", "key_id", "wrapped", "master_id")
        self.ledger.write(Batch(facts={"person_keys": [{**dict(zip(names, r)), "version": version} for r in rows]}))

    def discard(self) -> None:
        """Forget the keys made since the last flush (their batch was not written)."""
        for key in self._pending:
            self._current.pop(key.owner, None)
        self._pending.clear()

    def key(self, key_id: str) -> DataKey:
        """A stored key by id, unwrapped."""
        rows = self.ledger.query(f"SELECT owner, wrapped, master_id FROM person_keys FINAL "
                                 f"WHERE key_id = {quote(key_id)}").rows
        if not rows:
            raise VaultError(f"data key {key_id} is not in the vault: it was destroyed (tuike forget, "
                             "tuike retention) or never written")
        owner, wrapped, master_id = rows[0]
        return DataKey(owner, key_id, self._unwrap(owner, key_id, wrapped, master_id))

    def forget(self, owner: str) -> int:
        """Destroy every key of ``owner`` and remember that they are forgotten; the keys deleted."""
        found = self.ledger.query(f"SELECT count() FROM person_keys WHERE owner = {quote(owner)}").rows[0][0]
        self.ledger.query(f"INSERT INTO forgotten_people (owner, forgotten_at) SELECT {quote(owner)}, now()")
        self.destroy(f"owner = {quote(owner)}")
        self._forgotten.add(owner)
        self._current.pop(owner, None)
        return int(found)

    def destroy(self, where: str) -> None:
        """Delete the keys matching ``where`` and wait until the deletion has rewritten every part."""
        self.ledger.query(f"ALTER TABLE person_keys DELETE WHERE {where}")
        wait_for_mutations(self.ledger, "person_keys")

    def rotate(self) -> int:
        """Wrap every key with ``masters[0]``; the keys rewrapped. Afterwards the older master keys
        can be removed from the configuration."""
        master = self.masters[0]
        rows = self.ledger.query("SELECT owner, key_id, wrapped, master_id FROM person_keys FINAL "
                                 f"WHERE master_id != {quote(master.id)}").rows
        newest = self.ledger.query("SELECT max(version) FROM person_keys").rows[0][0] or 0
        self._insert([(o, k, self._wrap(master, DataKey(o, k, self._unwrap(o, k, w, m))), master.id)
                      for o, k, w, m in rows], max(int(time.time()), int(newest) + 1))  # a newer version wins
        self.ledger.query("OPTIMIZE TABLE person_keys FINAL")  # the old wrappings go with the merge
        return len(rows)

    @staticmethod
    def _wrap(master: MasterKey, key: DataKey) -> str:
        nonce = os.urandom(NONCE)
        aad = f"{key.owner}|{key.key_id}".encode()
        return base64.b64encode(nonce + AESGCM(master.key).encrypt(nonce, key.key, aad)).decode()

    def _unwrap(self, owner: str, key_id: str, wrapped: str, master_id: str) -> bytes:
        master = next((m for m in self.masters if m.id == master_id), None)
        if master is None:
            raise VaultError(f"data key {key_id} was wrapped by master key {master_id}, which is not in "
                             "privacy.master_keys: add the old master key back, then run `tuike keys rotate`")
        raw = base64.b64decode(wrapped)
        return AESGCM(master.key).decrypt(raw[:NONCE], raw[NONCE:], f"{owner}|{key_id}".encode())


def wait_for_mutations(ledger: SqlLedger, table: str | None = None, timeout_s: float = 120.0) -> None:
    """Wait until the database's ALTER … DELETE/UPDATE (of ``table``) are done: ClickHouse 18.16 has
    no synchronous mutations, and both engines list them in system.mutations."""
    where = "database = currentDatabase() AND is_done = 0" + (f" AND table = {quote(table)}" if table else "")
    deadline = time.monotonic() + timeout_s
    while ledger.query(f"SELECT count() FROM system.mutations WHERE {where}").rows[0][0]:
        if time.monotonic() > deadline:
            raise VaultError(f"deletions did not finish in {timeout_s:.0f} s: see system.mutations; "
                             "they go on in the background")
        time.sleep(0.1)


def seal(key: DataKey, plaintext: bytes) -> str:
    """``tk1.<key id>.<nonce + ciphertext, base64url>``: AES-256-GCM, the key id authenticated."""
    nonce = os.urandom(NONCE)
    body = AESGCM(key.key).encrypt(nonce, plaintext, key.key_id.encode())
    return f"tk1.{key.key_id}.{base64.urlsafe_b64encode(nonce + body).decode()}"


def sealed_key_id(sealed: str) -> str:
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != "tk1":
        raise VaultError(f"not a sealed value: {sealed[:40]!r}")
    return parts[1]


def unseal(key: DataKey, sealed: str) -> bytes:
    raw = base64.urlsafe_b64decode(sealed.split(".")[2])
    return AESGCM(key.key).decrypt(raw[:NONCE], raw[NONCE:], key.key_id.encode())
