"""The keys that verify WeChat Pay notifications, by the serial WeChat Pay names in ``Wechatpay-Serial``.

WeChat Pay signs with one of two kinds of key, and says which in ``Wechatpay-Serial``:

- **platform certificates** (平台证书): the header is the certificate's serial number. WeChat Pay
  issues a new certificate before the old one expires and signs with either while both are
  valid, so a shop configures several at once (``wechatpay_platform_cert`` holds one or more
  PEM certificates, one after the other);
- **微信支付公钥** (WeChat Pay public key), given to merchants since 2024 instead of
  certificates: a bare RSA public key and its id ``PUB_KEY_ID_…``, which is the header's value
  (``wechatpay_public_key`` and ``wechatpay_public_key_id``). A merchant moving from
  certificates to a public key receives both kinds for a while: both may be configured.

Keys are loaded with the wechatpayv3 SDK's loaders (``load_certificate``, ``load_public_key``:
the latter also takes the key's base64 body without the PEM armour, as the merchant platform
shows it); serials are matched as the SDK does (a certificate serial as a hexadecimal number, a
public key id as written).
"""
from __future__ import annotations

import re
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
PUBLIC_KEY_ID = re.compile(r"^PUB_KEY_ID_[0-9A-Za-z_]{1,64}$")
HEX = re.compile(r"^[0-9A-Fa-f]{1,64}$")


class WechatKeyError(ValueError):
    """A configured key that cannot be used: ``field`` is the tuike.yaml key that holds it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def serial_key(serial: str) -> str:
    """How a serial is looked up: a certificate serial as uppercase hex without leading zeros
    (``0d7ce59d…`` and ``D7CE59D…`` are one certificate), anything else as written."""
    return f"{int(serial, 16):X}" if HEX.match(serial) else serial


def platform_keys(certificates: str | None, public_key: str | None,
                  public_key_id: str | None) -> dict[str, rsa.RSAPublicKey]:
    """Every verification key of a shop by its serial; :class:`WechatKeyError` names a bad one."""
    # imported here: the SDK pulls in requests (~0.3 s), and every command reads tuike.yaml
    from wechatpayv3.utils import load_certificate, load_public_key

    keys: dict[str, rsa.RSAPublicKey] = {}
    if certificates is not None:
        found = PEM_CERTIFICATE.findall(certificates)
        if not found:
            raise WechatKeyError("wechatpay_platform_cert", "expected one or more PEM certificates "
                                 "(-----BEGIN CERTIFICATE----- …)")
        for n, pem in enumerate(found, 1):
            certificate = load_certificate(pem)
            if certificate is None:
                raise WechatKeyError("wechatpay_platform_cert", f"certificate {n} is not a valid PEM certificate")
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise WechatKeyError("wechatpay_platform_cert", f"certificate {n} does not hold an RSA key")
            keys[f"{certificate.serial_number:X}"] = key
    if (public_key is None) != (public_key_id is None):
        missing = "wechatpay_public_key_id" if public_key_id is None else "wechatpay_public_key"
        raise WechatKeyError(missing, "wechatpay_public_key and wechatpay_public_key_id go together "
                             "(the key and the id WeChat Pay sends in Wechatpay-Serial)")
    if public_key is not None and public_key_id is not None:
        if not PUBLIC_KEY_ID.match(public_key_id):
            raise WechatKeyError("wechatpay_public_key_id", f"expected PUB_KEY_ID_ followed by letters and digits, "
                                 f"got {public_key_id[:80]!r}")
        try:
            key = load_public_key(public_key)
        except Exception:  # the SDK raises a bare Exception('failed to load public key.')
            raise WechatKeyError("wechatpay_public_key", "not a PEM public key (-----BEGIN PUBLIC KEY----- …)") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise WechatKeyError("wechatpay_public_key", "not an RSA public key")
        keys[public_key_id] = key
    return keys


def key_for(keys: Mapping[str, rsa.RSAPublicKey], serial: str | None) -> rsa.RSAPublicKey | str:
    """The key ``Wechatpay-Serial`` names, or why there is none. Without the header a shop with
    one key uses it (what tuike did before it read the header)."""
    if not serial:
        if len(keys) == 1:
            return next(iter(keys.values()))
        return "missing Wechatpay-Serial (the shop has several WeChat Pay keys)"
    key = keys.get(serial_key(serial.strip()))
    if key is None:
        return (f"unknown Wechatpay-Serial {serial[:80]!r}: no platform certificate or WeChat Pay public key "
                "of this shop has it (tuike.yaml: wechatpay_platform_cert, wechatpay_public_key_id)")
    return key
