"""The edge's hand-written RS256 check (edge/rsa_pkcs1.py) against `cryptography`: it accepts exactly the
signatures `cryptography` accepts, for keys of several sizes, the stand-in's key and tampered or forged
signatures, and it refuses the PKCS#1 v1.5 forgeries that catch verifiers which parse the signature."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import json
import os
import random
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwk
from rsa_pkcs1 import MINIMUM_MODULUS_BITS, RsaPublicKey, public_key_from_jwk_numbers, verify_rs256

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def edge_key(private: rsa.RSAPrivateKey) -> RsaPublicKey:
    numbers = private.public_key().public_numbers()
    return RsaPublicKey(numbers.n, numbers.e)


def cryptography_accepts(private: rsa.RSAPrivateKey, message: bytes, signature: bytes) -> bool:
    try:
        private.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def raw_rsa_signature(private: rsa.RSAPrivateKey, encoded: bytes) -> bytes:
    """The RSA private operation on any encoded message: how a forger's "signature" decrypts to `encoded`."""
    numbers = private.private_numbers()
    size = (numbers.public_numbers.n.bit_length() + 7) // 8
    value = pow(int.from_bytes(encoded, "big"), numbers.d, numbers.public_numbers.n)
    return value.to_bytes(size, "big")


@pytest.fixture(scope="module", params=[2048, 3072, 4096])
def private_key(request: pytest.FixtureRequest) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=request.param)


@pytest.fixture(scope="module")
def small_exponent_key() -> rsa.RSAPrivateKey:
    # e = 3 is where the classic forgeries against parsing verifiers work (Bleichenbacher 2006).
    return rsa.generate_private_key(public_exponent=3, key_size=2048)


def test_signatures_made_by_cryptography_verify(private_key: rsa.RSAPrivateKey) -> None:
    key = edge_key(private_key)
    for length in (0, 1, 55, 56, 64, 1000):
        message = os.urandom(length)
        signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        assert verify_rs256(key, message, signature)


def test_every_tampering_is_refused_as_cryptography_refuses_it(private_key: rsa.RSAPrivateKey) -> None:
    key = edge_key(private_key)
    message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    generator = random.Random(1234)
    for _ in range(200):
        tampered_message, tampered_signature = bytearray(message), bytearray(signature)
        target = tampered_signature if generator.random() < 0.5 else tampered_message
        position = generator.randrange(len(target))
        target[position] ^= 1 << generator.randrange(8)
        expected = cryptography_accepts(private_key, bytes(tampered_message), bytes(tampered_signature))
        assert verify_rs256(key, bytes(tampered_message), bytes(tampered_signature)) is expected
        assert expected is False


def test_a_signature_of_another_key_is_refused(private_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=private_key.key_size)
    message = b"signed by someone else"
    assert not verify_rs256(
        edge_key(private_key), message, other.sign(message, padding.PKCS1v15(), hashes.SHA256())
    )


def test_a_signature_of_the_wrong_length_is_refused(private_key: rsa.RSAPrivateKey) -> None:
    key = edge_key(private_key)
    message = b"m"
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    for wrong in (signature[1:], b"\x00" + signature, signature + b"\x00", b""):
        assert not verify_rs256(key, message, wrong)
        assert not cryptography_accepts(private_key, message, wrong)


def test_a_signature_not_below_the_modulus_is_refused(private_key: rsa.RSAPrivateKey) -> None:
    # RFC 8017 RSAVP1 requires s < n: n itself and the largest value of the key's length are out of range.
    key = edge_key(private_key)
    for out_of_range in (key.modulus, 2 ** (8 * key.size_in_bytes) - 1):
        signature = out_of_range.to_bytes(key.size_in_bytes, "big")
        assert not verify_rs256(key, b"m", signature)
        assert not cryptography_accepts(private_key, b"m", signature)


def test_pss_and_sha1_signatures_are_refused(private_key: rsa.RSAPrivateKey) -> None:
    key = edge_key(private_key)
    message = b"m"
    pss = private_key.sign(
        message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    sha1 = private_key.sign(message, padding.PKCS1v15(), hashes.SHA1())
    assert not verify_rs256(key, message, pss)
    assert not verify_rs256(key, message, sha1)


@pytest.mark.parametrize(
    "forgery",
    ["garbage-after-digest", "short-padding", "no-padding", "sha1-digest-info", "digest-info-parameters"],
)
def test_forged_encodings_that_fool_parsing_verifiers_are_refused(
    small_exponent_key: rsa.RSAPrivateKey, forgery: str
) -> None:
    key = edge_key(small_exponent_key)
    size = key.size_in_bytes
    message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9"
    digest = hashlib.sha256(message).digest()
    if forgery == "garbage-after-digest":
        body = b"\x00" + SHA256_DIGEST_INFO + digest + b"\x42" * 40
        encoded = b"\x00\x01" + b"\xff" * (size - 2 - len(body)) + body
    elif forgery == "short-padding":
        encoded = b"\x00\x01\xff\x00" + SHA256_DIGEST_INFO + digest
        encoded += b"\x00" * (size - len(encoded))
    elif forgery == "no-padding":
        encoded = (b"\x00\x01\x00" + SHA256_DIGEST_INFO + digest).rjust(size, b"\x00")
    elif forgery == "sha1-digest-info":
        encoded = b"\x00\x01" + b"\xff" * (size - 3 - 35) + b"\x00" + SHA1_DIGEST_INFO + digest[:20]
    else:
        # NULL parameters swapped for other bytes of the same length.
        info = bytes.fromhex("3031300d060960864801650304020104000420")
        encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(info) - 32) + b"\x00" + info + digest
    assert len(encoded) == size
    signature = raw_rsa_signature(small_exponent_key, encoded)
    assert not verify_rs256(key, message, signature)
    assert not cryptography_accepts(small_exponent_key, message, signature)


def test_the_correct_encoding_made_by_hand_verifies(small_exponent_key: rsa.RSAPrivateKey) -> None:
    # The forgery test's construction is sound: the genuine encoding, signed the same way, verifies.
    key = edge_key(small_exponent_key)
    message = b"genuine"
    body = b"\x00" + SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    encoded = b"\x00\x01" + b"\xff" * (key.size_in_bytes - 2 - len(body)) + body
    signature = raw_rsa_signature(small_exponent_key, encoded)
    assert verify_rs256(key, message, signature)
    assert cryptography_accepts(small_exponent_key, message, signature)


def test_the_stand_ins_key_verifies_the_stand_ins_signatures() -> None:
    resources = importlib.resources.files("moto.cognitoidp") / "resources"
    public: dict[str, Any] = json.loads(gzip.decompress((resources / "jwks-public.json.gz").read_bytes()))
    private: dict[str, Any] = json.loads(gzip.decompress((resources / "jwks-private.json.gz").read_bytes()))
    (entry,) = public["keys"]
    key = public_key_from_jwk_numbers(_b64url_decode(entry["n"]), _b64url_decode(entry["e"]))
    # python-jose signs with it as moto does (moto ships only n, e and d).
    signer = jwk.construct(private, "RS256")
    message = b"header.payload"
    assert verify_rs256(key, message, signer.sign(message))
    assert not verify_rs256(key, message + b"!", signer.sign(message))


@pytest.mark.parametrize("exponent", [1, 2, 65536])
def test_unusable_public_exponents_are_refused_when_loaded(exponent: int) -> None:
    modulus = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    with pytest.raises(ValueError, match="exponent"):
        public_key_from_jwk_numbers(modulus.to_bytes(256, "big"), exponent.to_bytes(3, "big"))


def test_keys_weaker_than_2048_bits_are_refused_when_loaded() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    with pytest.raises(ValueError, match="too weak"):
        public_key_from_jwk_numbers(weak.n.to_bytes(128, "big"), weak.e.to_bytes(3, "big"))
    assert MINIMUM_MODULUS_BITS == 2048
