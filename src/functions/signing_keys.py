"""The PoolSigningKeys custom resource (template.yaml): while CloudFormation deploys, it reads the user pool's
JWKS and answers with it, lean, as the attribute `Jwks`, which the template gives the token-verifying
functions as COGNITO_JWKS. Their first authenticated request after a cold start then opens no connection
for the keys (tokens.SigningKeys).

CloudFormation waits for the answer at a pre-signed S3 URL (`ResponseURL`). Written by hand: AWS's
cfnresponse module exists only for inline code, and no library in the lock speaks this protocol.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from observability import logger

# Only what verifying an RS256 key needs: `alg` and `use` of the keys kept say what tokens.py assumes when
# they are absent (RS256, sig). Lambda's environment holds 4 KB for all its variables.
_KEPT_MEMBERS = ("kid", "kty", "n", "e")
MAX_JWKS_BYTES = 2048
_FETCH_ATTEMPTS = 3
_TIMEOUT_SECONDS = 10


def lean_jwks(document: Any) -> str:
    """The RS256 signing keys of a JWKS document, with only the members verification reads, as compact
    JSON. ValueError when none is usable or the result would not fit the environment budget."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys = [
        {member: entry[member] for member in _KEPT_MEMBERS if member in entry}
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("kid"), str)
        and entry.get("kty") == "RSA"
        and entry.get("alg", "RS256") == "RS256"
        and entry.get("use", "sig") == "sig"
        and isinstance(entry.get("n"), str)
        and isinstance(entry.get("e"), str)
    ]
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    lean = json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)
    if len(lean) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS takes {len(lean)} bytes, more than the {MAX_JWKS_BYTES} it may use")
    return lean


def fetch_jwks(url: str) -> Any:
    if not url.startswith("https://"):
        raise ValueError("the JWKS URL must be https")
    for attempt in range(1, _FETCH_ATTEMPTS + 1):
        try:
            # urlopen takes any scheme (bandit B310): only https gets here, checked above.
            with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310
                return json.loads(response.read(1_000_000))
        except (OSError, ValueError):
            if attempt == _FETCH_ATTEMPTS:
                raise
            logger.warning("could not read the JWKS, retrying", jwks_url=url, attempt=attempt)
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def answer(event: dict[str, Any], status: str, *, data: dict[str, str], reason: str = "") -> dict[str, Any]:
    """The response document CloudFormation expects for `event`."""
    url = str(event.get("ResourceProperties", {}).get("JwksUrl", "jwks"))
    # The keys' URL names the resource: a replaced pool makes a new one (CloudFormation then deletes the
    # old one, a no-op). A delete or a failure keeps the name CloudFormation knows.
    keeps_its_name = event["RequestType"] == "Delete" or status != "SUCCESS"
    return {
        "Status": status,
        "Reason": reason or status,
        "PhysicalResourceId": (event.get("PhysicalResourceId") if keeps_its_name else None) or url,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data,
    }


def respond(event: dict[str, Any], document: dict[str, Any]) -> None:
    # CloudFormation's is a pre-signed https URL; never a file: or custom scheme.
    if not str(event["ResponseURL"]).startswith(("https://", "http://")):
        raise ValueError("the response URL is not an http(s) URL")
    body = json.dumps(document).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
        event["ResponseURL"],
        data=body,
        method="PUT",
        # The pre-signed URL was signed without a content type: sending one would break the signature.
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    # urlopen takes any scheme (bandit B310): only http(s) gets here, checked above.
    with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS):  # noqa: S310  # nosec B310
        pass


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The answer to one CloudFormation request: the keys on Create and Update, nothing on Delete."""
    if event["RequestType"] == "Delete":
        return answer(event, "SUCCESS", data={})
    url = str(event.get("ResourceProperties", {}).get("JwksUrl", ""))
    try:
        jwks = lean_jwks(fetch_jwks(url))
    except (OSError, ValueError) as error:
        # A deployment without the keys would silently download them on every cold start: fail it instead.
        logger.exception("could not read the pool's signing keys", jwks_url=url)
        return answer(event, "FAILED", data={}, reason=f"could not read the signing keys at {url}: {error}")
    logger.info("read the pool's signing keys", jwks_url=url, jwks_bytes=len(jwks))
    return answer(event, "SUCCESS", data={"Jwks": jwks})


def handler(event: dict[str, Any], context: Any) -> None:
    """Lambda entry point (a CloudFormation custom resource request)."""
    try:
        document = handle(event)
    except Exception as error:
        # CloudFormation waits an hour for an answer that never comes: always give one.
        logger.exception("the signing keys request failed")
        document = answer(event, "FAILED", data={}, reason=f"{type(error).__name__}: {error}")
    respond(event, document)
