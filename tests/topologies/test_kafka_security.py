"""Kafka over SSL and SASL_SSL (SCRAM-SHA-512): every streaming command and the gateway, on the
local broker of deploy/kafka.sh (no mocks).

That broker listens on PLAINTEXT 9092 (every other test), SSL 9094 and SASL_SSL 9095 with a
certificate signed by a CA the set-up made (``<state>/tls/ca.crt``) and a SCRAM-SHA-512 user
``tuike`` whose password is in ``<state>/tls/tuike.password`` (state: ``TUIKE_KAFKA_DIR``, else
``.deploy/kafka``). The configuration names the password ``file:PATH`` or ``env:NAME``; it is
never on a command line. The PLAINTEXT listener of the same broker is used only to look at what
arrived, never by the commands under test.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.support.streaming import (REPO, Worker, Workers, compare, note, ok, start_serve, summarize_chdb,
                                     summarize_server, tuike, wait_for_members, wait_until_done)
from topologies.kafka_access import KafkaAccess

TLS = Path(os.environ.get("TUIKE_KAFKA_DIR") or REPO / ".deploy" / "kafka") / "tls"
SSL_PORT, SASL_SSL_PORT = 9094, 9095  # deploy/kafka.sh
SMALL = dict(promoters=20, customers=150, orders=200)
REFUSED = ("the broker refused user 'tuike' (SCRAM-SHA-512): check kafka.sasl_username and kafka.sasl_password, "
           "and that the user exists on the broker with a SCRAM-SHA-512 credential")


# --- without a broker ----------------------------------------------------------------------


def test_the_kafka_section_names_every_security_problem(tmp_path):
    from engine.config import ConfigError
    from topologies.kafka_access import kafka_access
    from topologies.settings import stream_settings

    with pytest.raises(ConfigError) as bad:
        stream_settings({"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                                   "sasl_username": "tuike", "sasl_password": "hunter2"}})
    assert {(p.path, p.message) for p in bad.value.problems} == {
        ("kafka.sasl_mechanism", "'PLAIN' is not one of SCRAM-SHA-256, SCRAM-SHA-512"),
        ("kafka.sasl_password", "write env:NAME (an environment variable) or file:PATH (a file that holds it), "
                                "not the password itself")}
    with pytest.raises(ConfigError) as bad:
        stream_settings({"kafka": {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "tuike"}})
    assert [p.path for p in bad.value.problems] == ["kafka.security_protocol", "kafka.sasl_username"]
    assert "password readable on the network" in bad.value.problems[0].message
    with pytest.raises(ConfigError) as bad:
        stream_settings({"kafka": {"security_protocol": "SASL_SSL", "sasl_username": "tuike"}})
    assert [(p.path, p.message) for p in bad.value.problems] == [
        ("kafka.sasl_mechanism", "required with security_protocol: SASL_SSL"),
        ("kafka.sasl_password", "required with security_protocol: SASL_SSL")]

    (tmp_path / "pw").write_text("s3cret\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    security = stream_settings({"kafka": {"security_protocol": "SASL_SSL", "ssl_cafile": str(ca),
                                          "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "tuike",
                                          "sasl_password": f"file:{tmp_path / 'pw'}"}}).security
    access = kafka_access("k1:9095,k2:9095", security)
    assert access.password == "s3cret"  # the file's trailing newline is not part of it
    assert str(access) == "k1:9095,k2:9095 (SASL_SSL, SCRAM-SHA-256 as tuike)" and "s3cret" not in repr(access)
    with pytest.raises(ConfigError) as bad:
        kafka_access("k1:9095", stream_settings({"kafka": {
            "security_protocol": "SASL_SSL", "ssl_cafile": str(tmp_path / "nope.pem"), "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "tuike", "sasl_password": "env:TK_UNSET_PASSWORD"}}).security)
    assert [(p.path, p.message.split(":")[0]) for p in bad.value.problems] == [
        ("kafka.ssl_cafile", str(tmp_path / "nope.pem")), ("kafka.sasl_password", "env")]
    assert "the environment variable TK_UNSET_PASSWORD is not set" in bad.value.problems[1].message


# --- on the local broker -------------------------------------------------------------------


@pytest.fixture(scope="module")
def listeners(kafka_broker: str) -> dict[str, KafkaAccess]:
    """The broker's SSL and SASL_SSL listeners, as tuike reaches them."""
    if not (TLS / "ca.crt").is_file():
        pytest.fail(f"no {TLS / 'ca.crt'}: the broker at {kafka_broker} was started before deploy/kafka.sh made "
                    "its SSL and SASL_SSL listeners; run `deploy/kafka.sh down && deploy/kafka.sh up`", pytrace=False)
    host = kafka_broker.rpartition(":")[0]
    ca = str(TLS / "ca.crt")
    password = (TLS / "tuike.password").read_text().strip()
    return {"SSL": KafkaAccess(f"{host}:{SSL_PORT}", "SSL", ca),
            "SASL_SSL": KafkaAccess(f"{host}:{SASL_SSL_PORT}", "SASL_SSL", ca, "SCRAM-SHA-512", "tuike", password)}


def kafka_section(prefix: str, access: KafkaAccess, password: str | None = None) -> str:
    """The ``kafka:`` section of ``tuike.yaml`` for ``access``; the password as a reference."""
    lines = [f"topic_prefix: {prefix}", "partitions: 4", f"security_protocol: {access.protocol}"]
    if access.cafile:
        lines.append(f"ssl_cafile: {access.cafile}")
    if access.mechanism:
        lines += [f"sasl_mechanism: {access.mechanism}", f"sasl_username: {access.username}",
                  f"sasl_password: {password or 'file:' + str(TLS / 'tuike.password')}"]
    return "kafka:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.fixture
def prefix(kafka_broker: str):
    """A topic prefix of this test's own; its topics deleted after it."""
    from topologies.admin import delete_topics

    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(delete_topics(kafka_broker, prefix=name + "."))


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, object]:
    """A small generated shop and its embedded ledger (`tuike run`), what the workers must match."""
    from tuike.lab.generate import generate_shop, write_events

    d = tmp_path_factory.mktemp("shop")
    events = d / "shop.jsonl"
    write_events(generate_shop(5, **SMALL), events)
    config = d / "tuike.yaml"
    config.write_text((REPO / "tuike.example.yaml").read_text())
    ok(tuike("run", "--events", str(events), "--data-dir", str(d / "data"), "--config", str(config), cwd=d))
    return events, summarize_chdb(d / "data", "embedded")


def _through_workers(access: KafkaAccess, prefix: str, shop, clickhouse_url: str, where: Path):
    """One worker over ``access``, the shop produced over it, waited for; the ledger compared with
    the embedded one. Returns what later steps need (the worker left running)."""
    from topologies.settings import StreamSettings

    events, reference = shop
    config = where / "tuike.yaml"
    config.write_text((REPO / "tuike.example.yaml").read_text() + "\n" + kafka_section(prefix, access))
    settings = StreamSettings(topic_prefix=prefix)
    workers = Workers([Worker("w1", where / "w1", config=config, clickhouse=clickhouse_url, broker=access.bootstrap)])
    workers[0].start()
    wait_for_members(access, settings.app_id(0), 1, workers)
    p = ok(tuike("produce", "--events", str(events), "--config", str(config), "--broker", access.bootstrap, cwd=where))
    assert f"broker        {access}\n" in p.stdout, p.stdout
    wait_until_done(broker=access, settings=settings, generation=0, clickhouse=clickhouse_url, workers=workers,
                    timeout=180, label=access.protocol)
    compare(reference, summarize_server(clickhouse_url, f"streamed over {access.protocol}"), holds_may_differ=True)
    assert f"broker {access}, " in workers[0].log.read_text()
    return config, settings, workers


@pytest.mark.long
def test_produce_and_a_worker_over_ssl_give_the_embedded_ledger(listeners, prefix, shop, clickhouse_url, tmp_path):
    _config, _settings, workers = _through_workers(listeners["SSL"], prefix, shop, clickhouse_url, tmp_path)
    workers.stop_all()


@pytest.mark.long
def test_over_sasl_ssl_produce_a_worker_lag_and_replay_give_the_embedded_ledger(listeners, prefix, shop,
                                                                               clickhouse_url, tmp_path):
    access = listeners["SASL_SSL"]
    config, settings, workers = _through_workers(access, prefix, shop, clickhouse_url, tmp_path)
    try:
        def lag(generation: int) -> None:
            last = ok(tuike("lag", "--config", str(config), "--broker", access.bootstrap, cwd=tmp_path)
                      ).stdout.strip().splitlines()[-1]
            assert last.startswith("total lag 0 messages") and f"group {settings.app_id(generation)} " in last, last

        lag(0)
        workers.stop_all()
        p = ok(tuike("replay", "--config", str(config), "--broker", access.bootstrap, cwd=tmp_path))
        assert p.stdout.startswith(f"generation 1 created: the workers you start next (group {settings.app_id(1)})"), p.stdout
        workers[0].start()
        wait_until_done(broker=access, settings=settings, generation=1, clickhouse=clickhouse_url, workers=workers,
                        timeout=180, label="replay over SASL_SSL", until_live=True)
        compare(shop[1], summarize_server(clickhouse_url, "generation 1 over SASL_SSL"), holds_may_differ=True)
        lag(1)
    finally:
        workers.stop_all()


def test_a_wrong_password_is_exit_2_naming_what_to_check_not_a_hang(listeners, prefix, clickhouse_url, tmp_path,
                                                                    monkeypatch):
    access = listeners["SASL_SSL"]
    config = tmp_path / "tuike.yaml"
    config.write_text(kafka_section(prefix, access, password="env:TK_KAFKA_PASSWORD"))
    monkeypatch.setenv("TK_KAFKA_PASSWORD", "not-" + access.password)
    events = tmp_path / "e.jsonl"
    events.write_text('{"type":"click","event_id":"e1","ts":"2026-11-11T10:00:00+08:00","click_id":"K1",'
                      '"promoter_id":"P1"}\n')
    for command in (["produce", "--events", str(events)], ["lag"], ["replay"],
                    ["worker", "--clickhouse", clickhouse_url, "--data-dir", str(tmp_path / "w")],
                    ["serve", "--to", "kafka", "--port", "0"]):  # said before serving, not as a 500 per webhook
        t0 = time.monotonic()
        p = ok(tuike(*command, "--config", str(config), "--broker", access.bootstrap, cwd=tmp_path, timeout=60), 2)
        assert p.stderr == f"tuike: Kafka at {access}: {REFUSED}\n", (command, p.stderr)
        assert time.monotonic() - t0 < 30, f"tuike {command[0]} took {time.monotonic() - t0:.0f} s to say so"


def test_a_connection_that_does_not_fit_the_listener_says_what_to_change(listeners, prefix, tmp_path, monkeypatch):
    ssl, sasl = listeners["SSL"], listeners["SASL_SSL"]
    cases = [  # (kafka: section, --broker, what stderr says)
        (kafka_section(prefix, KafkaAccess(ssl.bootstrap, "SSL")), ssl.bootstrap,
         "the broker's TLS certificate is not trusted (self-signed certificate in certificate chain): set "
         "kafka.ssl_cafile to the CA certificate that signed it"),
        (f"kafka:\n  topic_prefix: {prefix}\n", ssl.bootstrap,
         "the broker closed the connection: if that port is an SSL or SASL_SSL listener, set kafka.security_protocol"),
        (kafka_section(prefix, sasl), ssl.bootstrap,  # SCRAM on the SSL listener
         "that listener takes no SASL: check that --broker names the broker's SASL_SSL listener"),
        (kafka_section(prefix, ssl), sasl.bootstrap.replace(str(SASL_SSL_PORT), "9092"),
         "the broker dropped the TLS handshake: check that --broker names its SSL listener"),
    ]
    for i, (section, broker, says) in enumerate(cases):
        config = tmp_path / f"c{i}.yaml"
        config.write_text(section)
        p = ok(tuike("lag", "--config", str(config), "--broker", broker, cwd=tmp_path, timeout=60), 2)
        assert p.stderr.startswith("tuike: Kafka at ") and says in p.stderr, (section, p.stderr)
    config = tmp_path / "env.yaml"
    config.write_text(kafka_section(prefix, sasl, password="env:TK_KAFKA_PASSWORD"))
    monkeypatch.delenv("TK_KAFKA_PASSWORD", raising=False)
    p = ok(tuike("lag", "--config", str(config), "--broker", sasl.bootstrap, cwd=tmp_path), 2)
    assert p.stderr == ("tuike: bad configuration:\n  kafka.sasl_password: env:TK_KAFKA_PASSWORD: the environment "
                        "variable TK_KAFKA_PASSWORD is not set\n")


def test_the_gateway_hands_webhooks_to_kafka_over_sasl_ssl(listeners, kafka_broker, prefix, tmp_path, monkeypatch):
    """`tuike serve --to kafka --processes 2` on the SASL_SSL listener, the password in the
    environment each serving process reads: every acknowledged webhook is one keyed record."""
    import httpx
    import yaml

    from gateway.signatures import hmac_sha256_b64
    from tests.gateway.test_gateway import RAW, WEBHOOKS
    from tests.topologies.test_produce import read_topics
    from topologies.admin import ensure_topics_sync, input_topic_specs
    from topologies.settings import StreamSettings

    access = listeners["SASL_SSL"]
    settings = StreamSettings(topic_prefix=prefix)
    ensure_topics_sync(access, input_topic_specs(settings))
    monkeypatch.setenv("TK_KAFKA_PASSWORD", access.password)
    kafka = yaml.safe_load(kafka_section(prefix, access, password="env:TK_KAFKA_PASSWORD"))
    (tmp_path / "tuike.yaml").write_text(yaml.safe_dump({**RAW, **kafka}))
    proc, url = start_serve(["--config", str(tmp_path / "tuike.yaml"), "--data-dir", str(tmp_path / "data")], tmp_path,
                            serve_args=["--to", "kafka", "--broker", access.bootstrap, "--processes", "2"])
    order = json.loads((WEBHOOKS / "shopify" / "python_api_order.json").read_text())["order"]
    try:
        for i in range(10):
            body = json.dumps({**order, "id": 800_000 + i}).encode()
            with httpx.Client() as client:  # a connection each: both processes take some
                r = client.post(f"{url}/webhooks/shopify/s1", content=body, timeout=30, headers={
                    "X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": hmac_sha256_b64("shh-shopify", body),
                    "X-Shopify-Webhook-Id": f"w{i}"})
            assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert f"→ Kafka {access} (2 processes)" in proc.stderr.read()
    records = read_topics(kafka_broker, [settings.topic("orders")])  # looked at through PLAINTEXT
    assert sorted(key for *_, key, _ in records) == sorted(f"shopify:s1:{800_000 + i}".encode() for i in range(10))
    note(f"the gateway handed {len(records)} webhooks to {access}")
