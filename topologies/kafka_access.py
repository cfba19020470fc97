"""How tuike reaches Kafka: the bootstrap servers and the security of the connection, in one value.

Every Kafka client tuike makes (aiokafka producers, consumers and admin clients, and the Faust
app of ``tuike worker``) is built from a :class:`KafkaAccess`, so PLAINTEXT, SSL and SASL_SSL
(SCRAM) work the same in every command. The bootstrap servers come from ``--broker`` /
``TUIKE_BROKER`` (contract §5); the security from the ``kafka:`` section of ``tuike.yaml``
(:class:`topologies.settings.KafkaSecurity`), whose password is written ``env:NAME`` or
``file:PATH`` and read here: never on the command line, where ``ps`` shows it.

``str(access)`` is for messages: the servers, the protocol and the user, never the password.
When a client cannot start, :func:`started` connects once more by hand to say why (aiokafka
only logs the cause and raises "Unable to bootstrap"). aiokafka is imported where a client is
made, not here: the embedded gateway imports this module and never talks to Kafka.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.config import ConfigError, Problem
from schemas.secrets import SecretError, resolve_secret
from topologies.settings import KafkaSecurity

DEFAULT_BROKER = "127.0.0.1:9092"  # contract §5; environment TUIKE_BROKER
DIAGNOSE_SECONDS = 10.0


WORKER_CLIENT_PREFIX = "tuike-worker-"  # a worker's Kafka client id: tuike lag shows the owner of a partition as NAME


def worker_client_id(name: str) -> str:
    return f"{WORKER_CLIENT_PREFIX}{name}"


@dataclass(frozen=True)
class KafkaAccess:
    """Bootstrap servers (``HOST:PORT[,HOST:PORT…]``) and how to connect to them."""

    bootstrap: str = DEFAULT_BROKER
    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL or SASL_SSL
    cafile: str | None = None  # None: the system's trusted CAs
    mechanism: str | None = None  # SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_SSL)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        if self.protocol == "PLAINTEXT":
            return self.bootstrap
        return f"{self.bootstrap} ({self.protocol}" + (f", {self.mechanism} as {self.username})" if self.mechanism else ")")

    @classmethod
    def of(cls, broker: KafkaAccess | str) -> KafkaAccess:
        """A bare ``HOST:PORT`` is PLAINTEXT (tests, benchmarks)."""
        return broker if isinstance(broker, KafkaAccess) else cls(broker)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """One context per access (aiokafka wants a context, not a file); it verifies the broker's
        certificate and host name."""
        if self.protocol == "PLAINTEXT":
            return None
        return ssl.create_default_context(cafile=self.cafile)

    def security(self) -> dict[str, Any]:
        """The keyword arguments of an aiokafka client (producer, consumer, admin) for the security."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kw["ssl_context"] = self.ssl_context
        if self.mechanism:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def client(self, **kw: Any) -> dict[str, Any]:
        """``bootstrap_servers`` and the security, plus the client's own ``kw``."""
        return {"bootstrap_servers": self.bootstrap, **self.security(), **kw}

    def faust(self) -> dict[str, Any]:
        """The Faust app's ``broker`` and ``broker_credentials`` (faust.auth)."""
        import faust

        brokers = [f"kafka://{b.strip()}" for b in self.bootstrap.split(",")]
        credentials: Any = None
        if self.mechanism:
            credentials = faust.SASLCredentials(username=self.username, password=self.password,
                                                ssl_context=self.ssl_context, mechanism=self.mechanism)
        elif self.ssl_context is not None:
            credentials = faust.SSLCredentials(self.ssl_context)
        return {"broker": brokers, "broker_credentials": credentials}


class BrokerUnreachable(Exception):
    """No Kafka broker answers at the bootstrap address."""

    def __init__(self, kafka: KafkaAccess, detail: str = ""):
        self.kafka = kafka
        super().__init__(f"cannot reach Kafka at {kafka}: start it with `make kafka-up` or pass --broker"
                         + (f" ({detail})" if detail else ""))


class AccessRefused(Exception):
    """The broker answers but refuses the connection's security: credentials, certificate, protocol."""

    def __init__(self, kafka: KafkaAccess, detail: str):
        self.kafka = kafka
        super().__init__(f"Kafka at {kafka}: {detail}")


async def started(client: Any, kafka: KafkaAccess) -> Any:
    """``client`` (an aiokafka producer, consumer or admin client) started; if it cannot start, it is
    closed and the error says why: :class:`AccessRefused` or :class:`BrokerUnreachable`."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        await client.start()
    except BaseException as exc:
        await (client.stop() if hasattr(client, "stop") else client.close())  # admin clients close()
        if not isinstance(exc, (KafkaError, OSError)):
            raise
        refused = await refusal(kafka)
        if refused:
            raise AccessRefused(kafka, refused) from None
        raise BrokerUnreachable(kafka, "" if isinstance(exc, KafkaConnectionError) else f"{type(exc).__name__}: {exc}") from None
    return client


def kafka_access(bootstrap: str, security: KafkaSecurity) -> KafkaAccess:
    """The access for ``bootstrap`` with the configured security, its password read from the
    environment or its file. :class:`ConfigError` names the key and what to do."""
    problems: list[Problem] = []
    if security.ssl_cafile and not Path(security.ssl_cafile).is_file():
        problems.append(Problem("kafka.ssl_cafile", f"{security.ssl_cafile}: no such file (the CA certificate, PEM, "
                                                    "that signed the broker's certificate)"))
    password = None
    if security.sasl_password:
        try:
            password = resolve_secret(security.sasl_password)
        except SecretError as exc:
            problems.append(Problem("kafka.sasl_password", str(exc)))
    if problems:
        raise ConfigError(problems)
    return KafkaAccess(bootstrap, security.security_protocol, security.ssl_cafile, security.sasl_mechanism,
                       security.sasl_username, password)


async def refusal(access: KafkaAccess) -> str | None:
    """When a client could not start: whether the broker refuses the connection's security, and
    what to check. One connection to the first bootstrap server, made by hand so that the cause is
    an exception and not a log line; None when it connects, or fails for another reason (nothing
    listens, a timeout)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import (IllegalSaslStateError, KafkaConnectionError, KafkaError, SaslAuthenticationFailed,
                                 UnsupportedSaslMechanismError)

    host, _, port = access.bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=int(DIAGNOSE_SECONDS * 1000),
                                                  **access.security()), DIAGNOSE_SECONDS)
    except SaslAuthenticationFailed:
        return (f"the broker refused user {access.username!r} ({access.mechanism}): check kafka.sasl_username and "
                f"kafka.sasl_password, and that the user exists on the broker with a {access.mechanism} credential")
    except UnsupportedSaslMechanismError:
        return (f"the broker does not offer {access.mechanism} on {access.bootstrap}: check kafka.sasl_mechanism, "
                "and that --broker names the broker's SASL_SSL listener")
    except IllegalSaslStateError:
        return "that listener takes no SASL: check that --broker names the broker's SASL_SSL listener"
    except ssl.SSLCertVerificationError as exc:
        return (f"the broker's TLS certificate is not trusted ({exc.verify_message}): set kafka.ssl_cafile to the CA "
                "certificate that signed it")
    except ssl.SSLError as exc:
        return (f"the TLS handshake failed ({exc.reason or exc}): check that --broker names a TLS listener "
                f"and kafka.security_protocol ({access.protocol}) is the listener's")
    except KafkaConnectionError as exc:
        if access.protocol == "PLAINTEXT" and "closed" in str(exc):
            return ("the broker closed the connection: if that port is an SSL or SASL_SSL listener, set "
                    "kafka.security_protocol")
        return None
    except ConnectionResetError:  # a listener without TLS drops the TLS handshake
        return None if access.protocol == "PLAINTEXT" else (
            f"the broker dropped the TLS handshake: check that --broker names its {access.protocol} listener "
            "and kafka.security_protocol is that listener's")
    except (OSError, asyncio.TimeoutError, KafkaError):
        return None
    conn.close()
    return None
