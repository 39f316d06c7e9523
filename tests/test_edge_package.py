"""The Lambda@Edge package as `sam build --template-file templates/edge-auth.yaml` makes it: the two modules
and the baked configuration, nothing else, far below the 1 MB a viewer-facing function may weigh zipped,
importing only the standard library; the built handler verifies with the keys baked into it."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from tests.cloudformation import load_template
from tests.events.cloudfront import origin_request_event
from tests.prerequisites import missing_prerequisite

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SAM = Path(os.environ.get("SAM", ROOT / ".tools" / "sam" / "bin" / "sam"))
BUILD_TOOL = ROOT / "tools" / "build_edge.py"
# Lambda@Edge's quota for viewer-request and viewer-response functions (origin triggers allow 50 MB).
VIEWER_TRIGGER_ZIPPED_LIMIT = 1024 * 1024
EXPECTED_FILES = {"edge_auth.py", "rsa_pkcs1.py", "edge_config.json"}
# Whatever would drag a web framework, an SDK or a compiled crypto library into the package.
FORBIDDEN_IMPORTS = {
    "fastapi",
    "starlette",
    "pydantic",
    "mangum",
    "boto3",
    "botocore",
    "jose",
    "cryptography",
}
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EdgeTest"
CLIENT_ID = "edge-test-client"
KID = "edge-package-key"


@pytest.fixture(scope="module")
def signing_key() -> Any:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return jwk.construct(pem, "RS256")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, signing_key: Any) -> Path:
    """`tools/build_edge.py config` with a JWKS file (the network step replaced by a file of our key)."""
    directory = tmp_path_factory.mktemp("edge-config")
    public = signing_key.public_key().to_dict()
    jwks = {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}, {"kty": "EC", "kid": "ignored"}]}
    (directory / "jwks.json").write_text(json.dumps(jwks))
    out = directory / "edge-auth.json"
    subprocess.run(
        [
            sys.executable,
            str(BUILD_TOOL),
            "config",
            "--user-pool-id",
            "us-east-1_EdgeTest",
            "--region",
            "us-east-1",
            "--client-ids",
            f"{CLIENT_ID}, other-client",
            "--cors-allow-origins",
            "https://app.example.com",
            "--jwks-file",
            str(directory / "jwks.json"),
            "--out",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> Path:
    """sam build of the edge stack (as `make build-edge` runs it), configured by $EDGE_AUTH_CONFIG."""
    if not SAM.exists():
        missing_prerequisite("SAM CLI not installed: the edge stack cannot be built", "make sam-tools")
    directory = tmp_path_factory.mktemp("edge-build")
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EDGE_AUTH_CONFIG": str(config_file),
    }
    subprocess.run(
        [
            str(SAM),
            "build",
            "--template-file",
            str(ROOT / "templates" / "edge-auth.yaml"),
            "--build-dir",
            str(directory / "build"),
            "--cache-dir",
            str(directory / "cache"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return directory / "build"


@pytest.fixture(scope="module")
def package(build_dir: Path) -> Path:
    return build_dir / "EdgeAuthFunction"


def test_the_package_holds_the_function_and_its_configuration_only(package: Path) -> None:
    shipped = {path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file()}
    assert shipped == EXPECTED_FILES


def test_the_zipped_package_fits_a_viewer_trigger(package: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(package.rglob("*")):
            zipped.write(path, path.relative_to(package).as_posix())
    size = len(archive.getvalue())
    print(f"edge package: {size} bytes zipped")
    assert size < VIEWER_TRIGGER_ZIPPED_LIMIT


def _imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_the_package_imports_the_standard_library_and_itself_only(package: Path) -> None:
    own = {path.stem for path in package.glob("*.py")}
    for module in package.glob("*.py"):
        imported = _imported_modules(module.read_text())
        assert not imported & FORBIDDEN_IMPORTS, module.name
        outside = imported - own - set(sys.stdlib_module_names) - {"__future__"}
        assert not outside, f"{module.name} imports {sorted(outside)}"


def test_the_baked_configuration_holds_the_pool_the_clients_and_rs256_keys_only(package: Path) -> None:
    config = json.loads((package / "edge_config.json").read_text())
    assert config["issuer"] == ISSUER
    assert config["client_ids"] == sorted([CLIENT_ID, "other-client"])
    assert config["cors_allow_origins"] == ["https://app.example.com"]
    assert [key["kid"] for key in config["jwks"]["keys"]] == [KID]


def test_the_built_handler_verifies_with_its_baked_keys(package: Path, signing_key: Any) -> None:
    now = int(time.time())
    claims = {
        "sub": "s-1",
        "iss": ISSUER,
        "client_id": CLIENT_ID,
        "token_use": "access",
        "iat": now,
        "exp": now + 300,
    }
    good = jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": KID})
    other_client = jwt.encode(
        {**claims, "client_id": "x"}, signing_key, algorithm="RS256", headers={"kid": KID}
    )
    events = [
        origin_request_event(headers={"Authorization": f"Bearer {token}"}) for token in (good, other_client)
    ]
    # A fresh interpreter in the package's directory: what Lambda's runtime imports, nothing from edge/.
    script = (
        "import json, sys\n"
        "import edge_auth\n"
        "assert edge_auth.__file__.startswith(sys.argv[1])\n"
        "events = json.load(sys.stdin)\n"
        "print(json.dumps([edge_auth.handler(event, None) for event in events]))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, sys.argv[1]); exec({script!r})",
            str(package),
        ],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        check=True,
        cwd=package,
    )
    passed, refused = json.loads(result.stdout)
    assert passed == events[0]["Records"][0]["cf"]["request"]
    assert refused["status"] == "401"
    assert json.loads(refused["body"])["detail"] == "The token was issued to another client."


def test_the_built_template_runs_the_package_on_x86_64_without_an_environment(build_dir: Path) -> None:
    function = load_template(build_dir / "template.yaml")["Resources"]["EdgeAuthFunction"]["Properties"]
    assert function["CodeUri"] == "EdgeAuthFunction"
    assert function["Handler"] == "edge_auth.handler"
    # Lambda@Edge: no arm64, no environment variables, no X-Ray, a numbered version for CloudFront.
    assert function["Architectures"] == ["x86_64"]
    assert "Environment" not in function
    assert "Tracing" not in function
    assert function["AutoPublishAlias"] == "live"
    assert function["MemorySize"] <= 128
    assert function["Timeout"] <= 5


def test_packaging_without_a_configuration_says_how_to_make_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BUILD_TOOL),
            "package",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "tools/build_edge.py config" in result.stderr


@pytest.mark.parametrize(
    ("jwks", "complaint"),
    [
        ({"keys": []}, "no RS256 signing key"),
        ({"keys": [{"kty": "EC", "kid": "k"}]}, "no RS256 signing key"),
        ({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]}, "unusable key"),
    ],
)
def test_a_jwks_without_a_usable_key_is_refused_at_build_time(
    tmp_path: Path, jwks: dict[str, Any], complaint: str
) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    result = subprocess.run(
        [
            sys.executable,
            str(BUILD_TOOL),
            "config",
            "--user-pool-id",
            "us-east-1_X",
            "--region",
            "us-east-1",
            "--client-ids",
            "c",
            "--jwks-file",
            str(tmp_path / "jwks.json"),
            "--out",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stderr
    assert not (tmp_path / "out.json").exists()
