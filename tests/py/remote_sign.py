#!/usr/bin/env python3
"""Sign and verify gasdtu remote requests (commands and config pushes), format v1.

Needs the `cryptography` package (pip install cryptography). Copy it into your platform:
`make_envelope` signs a request body for one gateway, `open_envelope` checks one the way
the gateway does. Run it as a script for the command line shown in `main`.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PREFIX = b"gasdtu-remote-v1\n"
MAX_PAYLOAD = {"cmd": 8 * 1024, "config": 256 * 1024}


def signed_bytes(kind: str, gateway: str, body: str) -> bytes:
    """What a signature covers: prefix, topic kind, gateway id, then the body's exact UTF-8."""
    assert kind in ("cmd", "config")
    return PREFIX + kind.encode() + b"\n" + gateway.encode() + b"\n" + body.encode("utf-8")


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def key_id(raw_public: bytes) -> str:
    """First 8 bytes of SHA-256 of the raw 32-byte public key, lowercase hex."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """A PKCS#8 PEM "PRIVATE KEY" file, as `gasdtu keygen` writes it."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def make_envelope(key: Ed25519PrivateKey, kind: str, gateway: str, body: str) -> bytes:
    """The MQTT payload for <root>/cmd/req (kind "cmd") or <root>/config/set ("config")."""
    sig = key.sign(signed_bytes(kind, gateway, body))
    envelope = {
        "v": 1,
        "body": body,
        "key": key_id(raw_public_key(key.public_key())),
        "sig": base64.b64encode(sig).decode(),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def open_envelope(payload: bytes, kind: str, gateway: str, public_keys_b64: list) -> str:
    """Check an envelope as the gateway does; returns the body, raises ValueError if refused."""
    if len(payload) > MAX_PAYLOAD[kind]:
        raise ValueError("too_large")
    envelope = json.loads(payload)
    if envelope.get("v") != 1 or not isinstance(envelope.get("body"), str):
        raise ValueError("bad_request")
    if "key" not in envelope or "sig" not in envelope:
        raise ValueError("unsigned")
    keys = {}
    for b64 in public_keys_b64:
        raw = base64.b64decode(b64, validate=True)
        keys[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    public_key = keys.get(envelope["key"])
    if public_key is None:
        raise ValueError("unknown_key")
    try:
        sig = base64.b64decode(envelope["sig"], validate=True)
        public_key.verify(sig, signed_bytes(kind, gateway, envelope["body"]))
    except (InvalidSignature, ValueError):
        raise ValueError("bad_signature")
    return envelope["body"]


def main(argv: list) -> int:
    """remote_sign.py sign KEY.pem KIND GATEWAY < body      -> envelope on stdout
    remote_sign.py verify PUBLIC_B64 KIND GATEWAY < envelope -> body on stdout, or exit 1
    remote_sign.py keygen KEY.pem                             -> public key (base64) on stdout"""
    if len(argv) == 5 and argv[1] == "sign":
        with open(argv[2], "rb") as f:
            key = load_private_key(f.read())
        body = sys.stdin.buffer.read().decode("utf-8")
        sys.stdout.buffer.write(make_envelope(key, argv[3], argv[4], body))
        return 0
    if len(argv) == 5 and argv[1] == "verify":
        try:
            body = open_envelope(sys.stdin.buffer.read(), argv[3], argv[4], [argv[2]])
        except ValueError as e:
            print("refused: %s" % e, file=sys.stderr)
            return 1
        sys.stdout.buffer.write(body.encode("utf-8"))
        return 0
    if len(argv) == 3 and argv[1] == "keygen":
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with open(argv[2], "xb") as f:
            f.write(pem)
        print(base64.b64encode(raw_public_key(key.public_key())).decode())
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
