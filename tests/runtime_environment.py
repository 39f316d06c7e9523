"""The environment a deployed function gets, with values shaped like AWS's (generated table names, pool and
client ids, secret ARNs, the pool's signing keys as PoolSigningKeys ships them): its size against Lambda's
4 KB budget, for the template tests and `make bench`."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import json
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from tests.cloudformation import decide_conditions, evaluate_condition, function_properties, load_template

# Lambda refuses a function whose environment variables take more than 4 KB in all.
LAMBDA_ENVIRONMENT_LIMIT = 4096
STACK_NAME = "stratus-prod"
ACCOUNT = "123456789012"
REGION = "us-east-1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cognito_like_jwks(keys: int = 2) -> dict[str, Any]:
    """A JWKS shaped like a Cognito pool's: RS256 keys of 2048 bits, 44-character kids, every member."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    entries = []
    for index in range(keys):
        numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
        entries.append(
            {
                "alg": "RS256",
                "e": _b64url(numbers.e.to_bytes(3, "big")),
                "kid": base64.b64encode(hashlib.sha256(f"kid-{index}".encode()).digest()).decode(),
                "kty": "RSA",
                "n": _b64url(numbers.n.to_bytes(256, "big")),
                "use": "sig",
            }
        )
    return {"keys": entries}


def _resource_value(resources: dict[str, Any], name: str) -> str:
    """What a Ref to a resource gives, shaped like AWS's generated names and ids."""
    kind = resources[name]["Type"]
    suffix = hashlib.sha1(name.encode()).hexdigest()[:13].upper()
    if kind == "AWS::DynamoDB::Table":
        return f"{STACK_NAME}-{name}-{suffix}"
    if kind == "AWS::Cognito::UserPool":
        return f"{REGION}_AbCdEfGhI"
    if kind == "AWS::Cognito::UserPoolClient":
        return hashlib.sha1(name.encode()).hexdigest()[:26]
    if kind == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}-AbCdEf"
    if kind == "AWS::ApiGateway::UsagePlan":
        return "a1b2c3"
    return f"{STACK_NAME}-{name}-{suffix}"


def deployed_environment(
    function: str, *, parameters: dict[str, str] | None = None, jwks: str | None = None
) -> dict[str, str]:
    """`function`'s environment variables as CloudFormation would set them, with AWS-shaped values; the
    PoolSigningKeys attribute is `jwks` (default: a Cognito-shaped pool's, as the custom resource ships it)."""
    from functions.signing_keys import lean_jwks

    template = load_template()
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(parameters or {})
    values.update({"AWS::StackName": STACK_NAME, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT})
    resources = template["Resources"]
    shipped = jwks if jwks is not None else lean_jwks(cognito_like_jwks())

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        if "Ref" in value:
            name = value["Ref"]
            return values[name] if name in values else _resource_value(resources, name)
        if "Fn::Sub" in value:
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda match: values.get(match.group(1)) or _resource_value(resources, match.group(1)),
                value["Fn::Sub"],
            )
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(part for part in map(resolve, parts) if part)
        if value.get("Fn::GetAtt") == ["PoolSigningKeys", "Jwks"]:
            return shipped
        raise AssertionError(f"unexpected intrinsic in an environment variable: {value}")

    parameters_now = {name: values[name] for name in template["Parameters"]}
    declared = decide_conditions(
        function_properties(template, function)["Environment"]["Variables"],
        lambda condition: evaluate_condition(template, condition, parameters_now),
    )
    # Conditions decided as the parameters say; CloudFormation leaves out a variable whose value is
    # AWS::NoValue (decide_conditions dropped those).
    return {name: resolve(value) for name, value in declared.items()}


def environment_size(variables: dict[str, str]) -> int:
    """Bytes of the variables as Lambda receives them (their JSON, a little more than keys plus values)."""
    return len(json.dumps(variables, separators=(",", ":")).encode())


@dataclass(frozen=True)
class SigningKeysOfTheStandIn:
    """The stand-in's one signing key (moto ships its private half): its public JWKS as PoolSigningKeys would
    ship it, and access tokens it signs."""

    private_key: dict[str, Any]
    public_jwks: dict[str, Any]

    @property
    def shipped(self) -> str:
        from functions.signing_keys import lean_jwks

        return lean_jwks(self.public_jwks)

    def token(self, *, issuer: str, client_id: str, **claims: Any) -> str:
        """A client-credentials access token as Cognito issues them; `claims` add or override."""
        from jose import jwt

        now = int(time.time())
        payload = {
            "sub": client_id,
            "client_id": client_id,
            "token_use": "access",
            "scope": "stratus/read stratus/write",
            "iss": issuer,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        kid = str(self.private_key["kid"])
        return str(jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": kid}))


def standin_signing_keys() -> SigningKeysOfTheStandIn:
    resources = importlib.resources.files("moto.cognitoidp") / "resources"
    private_key = json.loads(gzip.decompress((resources / "jwks-private.json.gz").read_bytes()))
    public_jwks = json.loads(gzip.decompress((resources / "jwks-public.json.gz").read_bytes()))
    return SigningKeysOfTheStandIn(private_key, public_jwks)


def jwks_of_standin(url: str) -> Any:
    """The JWKS document a running stand-in serves for a pool (what the custom resource reads in AWS)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())
