"""Secrets written by reference (schemas/secrets.py): ``env:NAME`` and ``file:PATH``, resolved
where the gateway's settings are read; a reference that cannot be resolved names itself."""
from __future__ import annotations

import pytest

from engine.config import ConfigError
from schemas.secrets import SecretError, resolve_secret
from gateway.settings import gateway_settings


def test_file_secrets_are_read_without_the_trailing_line_break(tmp_path):
    (tmp_path / "shopify").write_text("s3cret\n")
    (tmp_path / "crlf").write_bytes(b"\xef\xbb\xbfwin-secret\r\n")  # a BOM and CRLF, as Notepad writes
    assert resolve_secret(f"file:{tmp_path}/shopify") == "s3cret"
    assert resolve_secret(f"file:{tmp_path}/crlf") == "win-secret"
    assert resolve_secret("inline") == "inline"


def test_a_pem_file_keeps_its_inner_lines(tmp_path):
    pem = "-----BEGIN PUBLIC KEY-----\nMIIB\nIjAN\n-----END PUBLIC KEY-----\n"
    (tmp_path / "pub_key.pem").write_text(pem)
    assert resolve_secret(f"file:{tmp_path}/pub_key.pem") == pem.rstrip("\n")


def test_references_that_cannot_be_resolved_name_the_file_or_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TK_NOT_SET", raising=False)
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    cases = {"env:TK_NOT_SET": "env:TK_NOT_SET: the environment variable TK_NOT_SET is not set",
             f"file:{tmp_path}/missing": f"file:{tmp_path}/missing: cannot read it: No such file or directory",
             f"file:{tmp_path}/empty": f"file:{tmp_path}/empty: the file is empty",
             f"file:{tmp_path}/big": f"file:{tmp_path}/big: over 1,048,576 bytes, not a secret",
             "file:": "file: names no file (expected file:PATH)"}
    for value, message in cases.items():
        with pytest.raises(SecretError) as err:
            resolve_secret(value)
        assert str(err.value) == message


def test_gateway_settings_resolve_file_secrets_and_check_the_shape_only_when_asked(tmp_path, monkeypatch):
    (tmp_path / "events").write_text("from-a-file\n")
    monkeypatch.setenv("TK_LINKS", "from-env")
    raw = {"shops": {"s1": {"events_secret": f"file:{tmp_path}/events", "shopify_secret": f"file:{tmp_path}/nope"}},
           "links": {"secret": "env:TK_LINKS"}}
    with pytest.raises(ConfigError) as bad:
        gateway_settings(raw)
    assert [str(p) for p in bad.value.problems] == [
        f"shops.s1.shopify_secret: file:{tmp_path}/nope: cannot read it: No such file or directory"]
    shape = gateway_settings(raw, resolve_secrets=False)  # tuike config check: nothing read
    assert shape.shops["s1"].shopify_secret == f"file:{tmp_path}/nope"
    (tmp_path / "nope").write_text("shopify-secret")
    s = gateway_settings(raw)
    assert (s.shops["s1"].events_secret, s.shops["s1"].shopify_secret, s.link_secret) == (
        "from-a-file", "shopify-secret", "from-env")
    assert "from-a-file" not in repr(s)
