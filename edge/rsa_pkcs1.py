"""RSASSA-PKCS1-v1_5 signature verification with SHA-256 (RS256, RFC 8017 section 8.2.2), in pure Python.

Written by hand on purpose: Lambda@Edge caps a viewer-facing package at 1 MB zipped, allows no layers, and
`cryptography` (the only well-kept library that verifies RSA) ships a compiled wheel of several MB per
platform. Verification needs only the public key, so no secret is at risk of timing leaks, and the check
below is the "encode and compare" method of RFC 8017: the expected encoded message is built from the hash
and compared byte for byte with what the signature decrypts to. Nothing is parsed out of the signature, so
the classic PKCS#1 v1.5 forgery tricks (garbage after the digest, short padding, loose ASN.1) have nothing
to work on. The tests hold it against `cryptography` with keys of several sizes and tampered signatures.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

# DER of DigestInfo{ AlgorithmIdentifier{ id-sha256, NULL }, OCTET STRING (32 bytes) } without the digest
# (RFC 8017, section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
# RFC 8017 9.2 step 3: the encoded message must leave room for at least 8 bytes of 0xff padding.
_MINIMUM_PADDING = 8
# Public keys weaker than this are refused when they are loaded; Cognito signs with 2048-bit keys.
MINIMUM_MODULUS_BITS = 2048


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    modulus: int
    exponent: int

    @property
    def size_in_bytes(self) -> int:
        return (self.modulus.bit_length() + 7) // 8


def public_key_from_jwk_numbers(modulus: bytes, exponent: bytes) -> RsaPublicKey:
    """A public key from a JWK's `n` and `e`, decoded from base64url (big-endian, unsigned)."""
    key = RsaPublicKey(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))
    if key.modulus.bit_length() < MINIMUM_MODULUS_BITS:
        raise ValueError(f"an RSA modulus of {key.modulus.bit_length()} bits is too weak")
    # An even or trivial exponent is no RSA key at all.
    if key.exponent < 3 or key.exponent % 2 == 0 or key.exponent >= key.modulus:
        raise ValueError("the RSA public exponent is not usable")
    return key


def verify_rs256(key: RsaPublicKey, message: bytes, signature: bytes) -> bool:
    """True when `signature` is key's RSASSA-PKCS1-v1_5 SHA-256 signature of `message`."""
    size = key.size_in_bytes
    # 8.2.2 step 1: a signature is exactly as long as the modulus (no leading zeros stripped, none added).
    if len(signature) != size:
        return False
    representative = int.from_bytes(signature, "big")
    # RSAVP1 step 1: the representative must lie below the modulus.
    if representative >= key.modulus:
        return False
    encoded = pow(representative, key.exponent, key.modulus).to_bytes(size, "big")
    expected = _expected_encoding(hashlib.sha256(message).digest(), size)
    return expected is not None and hmac.compare_digest(encoded, expected)


def _expected_encoding(digest: bytes, size: int) -> bytes | None:
    """EMSA-PKCS1-v1_5-ENCODE (RFC 8017 9.2): 0x00 0x01 0xff...0xff 0x00 DigestInfo."""
    digest_info = _SHA256_DIGEST_INFO + digest
    padding = size - len(digest_info) - 3
    if padding < _MINIMUM_PADDING:
        return None
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info
