"""Standard Webhooks signatures (edge.office.webhooks): the spec's own example, a receiver's check, secrets and
URLs refused with a ConfigError."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edge.errors import ConfigError, SignatureError
from edge.office.webhooks import (
    check_url,
    new_secret,
    parse_secret,
    signature,
    signed_headers,
    verify_webhook,
    write_secret,
)
from tests.support.webhook_receiver import spec_signature_holds

#: The example of the Standard Webhooks reference libraries' tests (standard-webhooks/standard-webhooks,
#: libraries/python/tests/test_webhooks.py, test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_spec_example_signs_as_published() -> None:
    assert signature(parse_secret(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_receiver_verifies_and_refuses() -> None:
    secret = parse_secret(SPEC_SECRET)
    headers = signed_headers(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert spec_signature_holds(SPEC_SECRET, headers, SPEC_BODY), "the test receiver's independent check agrees"
    assert verify_webhook(secret, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10) == SPEC_ID
    rotated = {**headers, "webhook-signature": "v1,AAAA v1a,BBBB " + headers["webhook-signature"]}
    assert verify_webhook(secret, rotated, SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID, "any of several signatures"
    refusals = {
        "body changed": (headers, SPEC_BODY.replace(b"2432", b"2433"), SPEC_TIMESTAMP),
        "id changed": ({**headers, "webhook-id": "msg_other"}, SPEC_BODY, SPEC_TIMESTAMP),
        "replayed later": (headers, SPEC_BODY, SPEC_TIMESTAMP + 301),
        "from the future": (headers, SPEC_BODY, SPEC_TIMESTAMP - 301),
        "no signature": ({k: v for k, v in headers.items() if k != "webhook-signature"}, SPEC_BODY, SPEC_TIMESTAMP),
        "timestamp not a number": ({**headers, "webhook-timestamp": "1e9"}, SPEC_BODY, SPEC_TIMESTAMP),
    }
    for sent, body, now in refusals.values():
        with pytest.raises(SignatureError):
            verify_webhook(secret, sent, body, now=now)
    with pytest.raises(SignatureError):
        verify_webhook(parse_secret(new_secret()), headers, SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize("text", [
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
    "whsec_not base64!",
    "whsec_" + base64.b64encode(b"x" * 23).decode(),  # shorter than the spec's 24 bytes
    "whsec_" + base64.b64encode(b"x" * 65).decode(),  # longer than 512 bits
    "whsec_",
])  # fmt: skip
def test_a_malformed_secret_is_a_config_error_that_does_not_quote_it(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_secret(text)
    assert text.removeprefix("whsec_") not in str(raised.value) or not text.removeprefix("whsec_")


def test_a_new_secret_file_is_private_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "receiver.secret"
    secret = write_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(parse_secret(path.read_text())) == 32
    assert parse_secret(secret) == parse_secret(path.read_text())
    with pytest.raises(ConfigError, match="exists"):
        write_secret(path)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://procedure.ward.example/hooks", True),
    ("http://127.0.0.1:8080/hooks", True),
    ("http://localhost/hooks", True),
    ("http://[::1]:9/h", True),
    ("http://procedure.ward.example/hooks", False),  # citizens' data in clear over the network
    ("http://10.0.0.5/hooks", False),
    ("ftp://127.0.0.1/x", False),
    ("https:///nohost", False),
])  # fmt: skip
def test_webhook_urls(url: str, ok: bool) -> None:
    if ok:
        assert check_url(url) == url
    else:
        with pytest.raises(ConfigError):
            check_url(url)
