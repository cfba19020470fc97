"""WeChat Pay verification keys by serial (gateway/wechatpay_keys.py): several platform
certificates at once (rotation), 微信支付公钥 mode (``PUB_KEY_ID_…``), chosen by
``Wechatpay-Serial``; an unknown serial is a 401 naming it. On the published wechatpay-go vector
(../shared/realdata/webhooks/wechatpay, copied to tests/data/realdata): its certificate, and the
same RSA key given as a bare WeChat Pay public key (the signature scheme is the same; only the
serial header differs, and it is not covered by the signature)."""
from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from engine.config import ConfigError, parse_config
from gateway.app import create_app
from gateway.handoff import EmbeddedHandoff
from gateway.settings import gateway_settings
from gateway.signatures import verify_wechatpay
from gateway.wechatpay_keys import key_for, platform_keys, serial_key
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"
VECTOR = json.loads((WEBHOOKS / "wechatpay" / "wechatpay_go_notify_test_vector.json").read_text())["notify_test"]
CERT = VECTOR["platform_certificate_pem"]
SERIAL = VECTOR["headers"]["Wechatpay-Serial"]  # D7CE59D1F522D701, the certificate's serial
PUBLIC_KEY = x509.load_pem_x509_certificate(CERT.encode()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
PUB_KEY_ID = "PUB_KEY_ID_0112345678202501010000000000000000"


def _new_certificate(serial: int) -> tuple[str, rsa.RSAPrivateKey]:
    """A second platform certificate, as WeChat Pay issues before the current one expires."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    now = dt.datetime(2021, 6, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1825))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key


NEW_CERT, NEW_KEY = _new_certificate(0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
NEW_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


def _signed_by_new_key(body: bytes) -> dict:
    t, nonce = VECTOR["headers"]["Wechatpay-Timestamp"], VECTOR["headers"]["Wechatpay-Nonce"]
    signature = NEW_KEY.sign(f"{t}\n{nonce}\n".encode() + body + b"\n", padding.PKCS1v15(), hashes.SHA256())
    return {**VECTOR["headers"], "Wechatpay-Serial": NEW_SERIAL, "Wechatpay-Signature": base64.b64encode(signature).decode()}


def test_keys_by_serial_from_several_certificates_and_a_public_key():
    keys = platform_keys(CERT + "\n" + NEW_CERT, PUBLIC_KEY, PUB_KEY_ID)
    assert sorted(keys) == [NEW_SERIAL, SERIAL, PUB_KEY_ID]
    # serials match as numbers, as the SDK compares them: case and leading zeros do not matter
    assert serial_key("00d7ce59d1f522d701") == SERIAL and key_for(keys, "00d7ce59d1f522d701") is keys[SERIAL]
    assert key_for(keys, PUB_KEY_ID) is keys[PUB_KEY_ID]
    assert key_for(keys, None) == "missing Wechatpay-Serial (the shop has several WeChat Pay keys)"
    assert key_for({SERIAL: keys[SERIAL]}, None) is keys[SERIAL]  # one key and no header: as before


def test_the_published_vector_verifies_by_certificate_serial_and_as_a_public_key():
    body, h, now = VECTOR["raw_body"].encode(), VECTOR["headers"], float(VECTOR["now_unix"])
    args = (body, h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], h["Wechatpay-Signature"])
    rotation = platform_keys(NEW_CERT + CERT, None, None)
    assert verify_wechatpay(*args, SERIAL, rotation, now) is None
    public = platform_keys(None, PUBLIC_KEY, PUB_KEY_ID)
    assert verify_wechatpay(*args, PUB_KEY_ID, public, now) is None
    # the right key named by the wrong serial, and the wrong key by its own serial
    assert verify_wechatpay(*args, SERIAL, public, now).startswith("unknown Wechatpay-Serial 'D7CE59D1F522D701'")
    assert verify_wechatpay(*args, NEW_SERIAL, rotation, now) == "Wechatpay-Signature does not match the body"


def test_bad_keys_are_configuration_problems_naming_the_key():
    def problems(shop: dict) -> list[str]:
        with pytest.raises(ConfigError) as bad:
            gateway_settings({"shops": {"m1": shop}})
        return [str(p) for p in bad.value.problems]

    assert problems({"wechatpay_platform_cert": "MIIDVzCC…"}) == [
        "shops.m1.wechatpay_platform_cert: expected one or more PEM certificates (-----BEGIN CERTIFICATE----- …)"]
    assert problems({"wechatpay_platform_cert": CERT.replace("MIID", "MIIE", 1)}) == [
        "shops.m1.wechatpay_platform_cert: certificate 1 is not a valid PEM certificate"]
    assert problems({"wechatpay_public_key": PUBLIC_KEY}) == [
        "shops.m1.wechatpay_public_key_id: wechatpay_public_key and wechatpay_public_key_id go together "
        "(the key and the id WeChat Pay sends in Wechatpay-Serial)"]
    assert problems({"wechatpay_public_key": PUBLIC_KEY, "wechatpay_public_key_id": "D7CE59D1"}) == [
        "shops.m1.wechatpay_public_key_id: expected PUB_KEY_ID_ followed by letters and digits, got 'D7CE59D1'"]
    assert problems({"wechatpay_public_key": "not a key", "wechatpay_public_key_id": PUB_KEY_ID}) == [
        "shops.m1.wechatpay_public_key: not a PEM public key (-----BEGIN PUBLIC KEY----- …)"]
    # the merchant platform shows the key's base64 body alone: the SDK's loader takes it too
    body_only = "".join(PUBLIC_KEY.splitlines()[1:-1])
    shop = gateway_settings({"shops": {"m1": {"wechatpay_public_key": body_only,
                                              "wechatpay_public_key_id": PUB_KEY_ID}}}).shops["m1"]
    assert list(shop.wechatpay_keys) == [PUB_KEY_ID]


def _gateway(tmp_path: Path, shop: dict):
    raw = {"currency": "CNY", "shops": {"m1": {"wechatpay_apiv3_key": VECTOR["apiv3_key"], **shop}}}
    ledger = open_ledger(None, tmp_path)
    app = create_app(gateway_settings(raw), EmbeddedHandoff(EmbeddedPipeline(parse_config(raw), tmp_path, ledger)),
                     clock=lambda: float(VECTOR["now_unix"]))
    return TestClient(app), ledger


def test_through_the_gateway_rotation_public_key_and_an_unknown_serial(tmp_path):
    body = VECTOR["raw_body"].encode()
    client, ledger = _gateway(tmp_path, {"wechatpay_platform_cert": CERT + NEW_CERT,
                                         "wechatpay_public_key": PUBLIC_KEY, "wechatpay_public_key_id": PUB_KEY_ID})
    with client:
        post = lambda headers: client.post("/webhooks/wechatpay/m1", content=body, headers=headers)  # noqa: E731
        assert post(VECTOR["headers"]).json()["code"] == "SUCCESS"  # the old certificate
        assert post(_signed_by_new_key(body)).json()["code"] == "SUCCESS"  # the new one, during rotation
        assert post({**VECTOR["headers"], "Wechatpay-Serial": PUB_KEY_ID}).json()["code"] == "SUCCESS"
        unknown = post({**VECTOR["headers"], "Wechatpay-Serial": "PUB_KEY_ID_0199"})
        assert unknown.status_code == 401
        assert unknown.json()["error"] == (
            "unknown Wechatpay-Serial 'PUB_KEY_ID_0199': no platform certificate or WeChat Pay public key of this "
            "shop has it (tuike.yaml: wechatpay_platform_cert, wechatpay_public_key_id)")
        forged = {**_signed_by_new_key(body), "Wechatpay-Serial": SERIAL}  # new key's signature, old serial
        assert post(forged).status_code == 401
    reasons = [r for (r,) in ledger.query("SELECT reason FROM dead_letters ORDER BY reason").rows]
    ledger.close()
    assert reasons == ["Wechatpay-Signature does not match the body"] + \
        ["not mapped: event_type 'PAYSCORE.USER_OPEN_SERVICE'"] * 3 + [unknown.json()["error"]]


def test_a_public_key_only_merchant_and_a_shop_without_keys(tmp_path):
    body = VECTOR["raw_body"].encode()
    client, ledger = _gateway(tmp_path, {"wechatpay_public_key": PUBLIC_KEY, "wechatpay_public_key_id": PUB_KEY_ID})
    with client:
        ok = client.post("/webhooks/wechatpay/m1", content=body, headers={**VECTOR["headers"],
                                                                          "Wechatpay-Serial": PUB_KEY_ID})
        assert ok.status_code == 200 and ok.json()["code"] == "SUCCESS"
    ledger.close()
    client, ledger = _gateway(tmp_path / "none", {})
    with client:
        r = client.post("/webhooks/wechatpay/m1", content=body, headers=VECTOR["headers"])
        assert (r.status_code, r.json()["error"]) == (
            404, "shop 'm1' has no wechatpay_platform_cert or wechatpay_public_key (tuike.yaml: shops.m1)")
    ledger.close()
