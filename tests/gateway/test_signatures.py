"""Webhook signatures (gateway/signatures.py) on the published vectors in
../shared/realdata/webhooks (copied to tests/data/realdata): each verifies, and a one-byte change
to the body or the signature is refused."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gateway.signatures import (decrypt_wechatpay_resource, hmac_sha256_b64, verify_events, verify_shopify,
                                verify_wechatpay, verify_woocommerce, verify_youzan, wp_specialchars_decode,
                                youzan_sign)
from gateway.wechatpay_keys import platform_keys

WEBHOOKS = Path(__file__).resolve().parents[1] / "data" / "realdata" / "webhooks"
VECTORS = json.loads((WEBHOOKS / "signature_test_vectors.json").read_text())["vectors"]
WECHAT = json.loads((WEBHOOKS / "wechatpay" / "wechatpay_go_notify_test_vector.json").read_text())


def flip(data: bytes, at: int = 5) -> bytes:
    """The same bytes with one of them changed."""
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_published_hmac_vectors_verify(vector):
    body = vector["raw_body"].encode()
    assert hmac_sha256_b64(vector["secret"], body) == vector["expected_base64"]
    for verify in (verify_shopify, verify_woocommerce, verify_events):
        assert verify(body, vector["expected_base64"], vector["secret"]) is None


def test_a_one_byte_change_to_body_or_signature_is_refused():
    v = VECTORS[0]
    body, sig = v["raw_body"].encode(), v["expected_base64"]
    assert verify_shopify(flip(body), sig, v["secret"]) == "X-Shopify-Hmac-Sha256 does not match the body"
    assert verify_shopify(body, flip(sig.encode()).decode(), v["secret"]) == "X-Shopify-Hmac-Sha256 does not match the body"
    assert verify_shopify(body, None, v["secret"]) == "missing X-Shopify-Hmac-Sha256"
    assert verify_woocommerce(flip(body, 20), sig, v["secret"]) == "X-WC-Webhook-Signature does not match the body"


def test_woocommerce_decodes_the_secret_as_wordpress_does():
    assert wp_specialchars_decode("a&amp;b&#039;c&#x27;d&quot;e&lt;f&gt;") == "a&b'c'd\"e<f>"
    assert wp_specialchars_decode("&copy; &nbsp; &#169;") == "&copy; &nbsp; &#169;"  # not one of the five
    body = b'{"id":727}'
    signed_with_decoded = hmac_sha256_b64("s3cr&t'", body)
    assert verify_woocommerce(body, signed_with_decoded, "s3cr&amp;t&#039;") is None
    assert verify_shopify(body, signed_with_decoded, "s3cr&amp;t&#039;") is not None  # Shopify does not decode


def test_youzan_sign_is_md5_of_client_id_msg_secret():
    samples = json.loads((WEBHOOKS / "youzan" / "youzan_push_samples.json").read_text())["samples"]
    push = json.loads(samples[0]["raw_body"])
    # no secret was published: sign the real push with one of ours, then check what must fail
    push["sign"] = youzan_sign(push["client_id"], push["msg"], "our-secret")
    assert push["sign"] == __import__("hashlib").md5(f"{push['client_id']}{push['msg']}our-secret".encode()).hexdigest()
    assert verify_youzan(push, push["client_id"], "our-secret") is None
    assert verify_youzan({**push, "msg": push["msg"][:-1] + "E"}, push["client_id"], "our-secret") is not None
    assert verify_youzan(push, push["client_id"], "another") == "youzan sign does not match client_id + msg"
    assert verify_youzan(push, "someone-else", "our-secret") == "youzan push for another client_id"


def _wechat_args(body: bytes | None = None, signature: str | None = None, now: float | None = None):
    t = WECHAT["notify_test"]
    h = t["headers"]
    return (body if body is not None else t["raw_body"].encode(), h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"],
            signature if signature is not None else h["Wechatpay-Signature"], h["Wechatpay-Serial"],
            platform_keys(t["platform_certificate_pem"], None, None), now if now is not None else float(t["now_unix"]))


def test_the_wechatpay_notification_verifies_and_decrypts():
    t = WECHAT["notify_test"]
    assert verify_wechatpay(*_wechat_args()) is None
    resource = json.loads(t["raw_body"])["resource"]
    assert decrypt_wechatpay_resource(resource, t["apiv3_key"]) == t["expected_plaintext"].encode()
    a = WECHAT["aes_test"]
    assert decrypt_wechatpay_resource({"ciphertext": a["ciphertext"], "nonce": a["nonce"],
                                       "associated_data": a["associated_data"]}, a["apiv3_key"]) == b"Hello World"


def test_the_wechatpay_notification_refuses_any_change():
    t = WECHAT["notify_test"]
    body = t["raw_body"].encode()
    sig = t["headers"]["Wechatpay-Signature"]
    assert verify_wechatpay(*_wechat_args(body=flip(body, 40))) == "Wechatpay-Signature does not match the body"
    bad_sig = base64.b64encode(flip(base64.b64decode(sig), 10)).decode()
    assert verify_wechatpay(*_wechat_args(signature=bad_sig)) == "Wechatpay-Signature does not match the body"
    assert "away from now" in verify_wechatpay(*_wechat_args(now=float(t["now_unix"]) + 3600))
    resource = json.loads(t["raw_body"])["resource"]
    altered = {**resource, "ciphertext": base64.b64encode(flip(base64.b64decode(resource["ciphertext"]))).decode()}
    assert "does not decrypt" in decrypt_wechatpay_resource(altered, t["apiv3_key"])
    assert "does not decrypt" in decrypt_wechatpay_resource(resource, "another-key-16by")
