"""Builds the Lambda@Edge package (edge/) with the user pool's issuer, app clients and signing keys baked in:
Lambda@Edge has no environment variables, so whatever the function must know ships inside it.

Two steps, because only the first needs the network (the pool's JWKS) and only the second runs in `sam build`:

    python3 tools/build_edge.py config --user-pool-id us-east-1_AbC --region us-east-1 \\
        --client-ids <web>,<machine>[,<partner>...] [--cors-allow-origins https://app.example.com] \\
        [--jwks-file jwks.json] [--out build/edge-auth.json]
    python3 tools/build_edge.py package ARTIFACTS_DIR [--config build/edge-auth.json]

`sam build --template-file templates/edge-auth.yaml` runs `package` through edge/Makefile, reading the
configuration from $EDGE_AUTH_CONFIG (default build/edge-auth.json). A new signing key in the pool means
running both steps again and publishing a new version (docs/operations.md, "Refresh the edge's keys").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EDGE_SOURCE = ROOT / "edge"
# The modules the function runs, and nothing else (no Makefile, no caches).
EDGE_MODULES = ("edge_auth.py", "rsa_pkcs1.py")
DEFAULT_CONFIG = ROOT / "build" / "edge-auth.json"
CONFIG_VARIABLE = "EDGE_AUTH_CONFIG"
sys.path.insert(0, str(EDGE_SOURCE))

from edge_auth import CONFIG_FILE, keys_from_jwks  # noqa: E402 - the edge code root is not a package


def log(message: str) -> None:
    print(f"build_edge: {message}", file=sys.stderr, flush=True)


def issuer_of(user_pool_id: str, region: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def fetch_jwks(url: str) -> dict[str, Any]:
    if not url.startswith("https://"):
        raise SystemExit(f"build_edge: refusing to fetch signing keys over anything but https: {url}")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - https checked above
        document: dict[str, Any] = json.loads(response.read(1_000_000))
    return document


def edge_config(
    issuer: str, client_ids: list[str], jwks: dict[str, Any], cors_allow_origins: list[str]
) -> dict[str, Any]:
    """The configuration the function reads, checked: at least one usable RS256 key, at least one client."""
    try:
        keys = keys_from_jwks(jwks)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SystemExit(f"build_edge: the JWKS holds an unusable key: {error}") from None
    if not keys:
        raise SystemExit("build_edge: the JWKS holds no RS256 signing key")
    if not client_ids:
        raise SystemExit("build_edge: no app client ids: every token would be refused")
    if not issuer.startswith("https://"):
        raise SystemExit(f"build_edge: the issuer must be an https URL: {issuer}")
    usable = [entry for entry in jwks["keys"] if isinstance(entry, dict) and entry.get("kid") in keys]
    return {
        "issuer": issuer,
        "client_ids": sorted(set(client_ids)),
        "cors_allow_origins": sorted(set(cors_allow_origins)),
        "jwks": {"keys": usable},
    }


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def write_config(arguments: argparse.Namespace) -> None:
    issuer = issuer_of(arguments.user_pool_id, arguments.region)
    if arguments.jwks_file:
        jwks = json.loads(Path(arguments.jwks_file).read_text())
    else:
        jwks = fetch_jwks(f"{issuer}/.well-known/jwks.json")
    config = edge_config(issuer, _split(arguments.client_ids), jwks, _split(arguments.cors_allow_origins))
    out = Path(arguments.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(config, indent=2) + "\n")
    log(f"wrote {out}: {len(config['jwks']['keys'])} signing key(s), {len(config['client_ids'])} client(s)")


def package(artifacts: Path, config_path: Path) -> None:
    """Copies the function's modules and the checked configuration into `artifacts`. No bytecode: two small
    modules compile in about a millisecond, and Lambda@Edge runs on x86_64 with a Python this build may lack."""
    if not config_path.is_file():
        raise SystemExit(
            f"build_edge: no configuration at {config_path}: run `python3 tools/build_edge.py config ...` "
            f"first, or point {CONFIG_VARIABLE} at one (docs/operations.md, 'The edge stack')"
        )
    source = json.loads(config_path.read_text())
    config = edge_config(
        source["issuer"], source["client_ids"], source["jwks"], source.get("cors_allow_origins", [])
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    for module in EDGE_MODULES:
        shutil.copyfile(EDGE_SOURCE / module, artifacts / module)
    (artifacts / CONFIG_FILE).write_text(json.dumps(config, separators=(",", ":")))
    log(f"packaged {', '.join(EDGE_MODULES)} and {CONFIG_FILE} into {artifacts}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write the edge configuration (fetches the pool's JWKS)")
    config.add_argument("--user-pool-id", required=True)
    config.add_argument("--region", required=True)
    config.add_argument("--client-ids", required=True, help="comma-separated app client ids")
    config.add_argument("--cors-allow-origins", default="", help="comma-separated browser origins")
    config.add_argument("--jwks-file", help="read the JWKS from this file instead of the issuer")
    config.add_argument("--out", default=str(DEFAULT_CONFIG))
    build = commands.add_parser("package", help="copy the function and its configuration into a directory")
    build.add_argument("artifacts", type=Path)
    build.add_argument("--config", type=Path, default=Path(os.environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG))
    arguments = parser.parse_args(argv)
    if arguments.command == "config":
        write_config(arguments)
    else:
        package(arguments.artifacts, arguments.config)


if __name__ == "__main__":
    main()
