"""Creates, on the stand-in, every resource the app needs, from the same definitions production uses:
the table from the PynamoDB models, the idempotency and rate-limit tables and a Cognito user pool shaped
like template.yaml's, and the app secret."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3

from models import bind_models
from models.table import StratusItem
from settings import Settings

REGION = "us-east-1"
GROUPS = ("admin", "user")
# The local pool accepts USER_PASSWORD_AUTH so `make token` can sign in without a browser; the deployed
# web client uses the authorization code flow with PKCE instead.
LOCAL_AUTH_FLOWS = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"]


@dataclass(frozen=True)
class DemoUser:
    name: str
    email: str
    groups: tuple[str, ...]


DEMO_PASSWORD = "Stratus-demo-2026!"  # noqa: S105 - a local, documented demo credential
DEMO_USERS = {
    "alice": DemoUser(name="Alice (admin)", email="alice@example.com", groups=("admin", "user")),
    "bob": DemoUser(name="Bob", email="bob@example.com", groups=("user",)),
}


@dataclass
class LocalResources:
    """What was created, and the environment that points the app at it."""

    endpoint: str
    table_name: str
    user_pool_id: str
    client_id: str
    secret_arn: str
    idempotency_table_name: str = ""
    rate_limit_table_name: str = ""
    region: str = REGION
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rate_limit_storage_uri(self) -> str:
        return f"dynamodb://{self.rate_limit_table_name}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.user_pool_id}/.well-known/jwks.json"

    def app_environment(self) -> dict[str, str]:
        return {
            **standin_environment(self.endpoint, self.region),
            "STAGE": "dev",
            "TABLE_NAME": self.table_name,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_CLIENT_IDS": self.client_id,
            "COGNITO_JWKS_URL": self.jwks_url,
            "APP_SECRET_ARN": self.secret_arn,
            "IDEMPOTENCY_TABLE_NAME": self.idempotency_table_name,
            **({"RATE_LIMIT_STORAGE_URI": self.rate_limit_storage_uri} if self.rate_limit_table_name else {}),
            **self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalResources:
        return cls(**json.loads(text))


def standin_environment(endpoint: str, region: str = REGION) -> dict[str, str]:
    """The standard AWS SDK variables that send every client to the stand-in, with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


def aws_client(service: str, endpoint: str, region: str = REGION) -> Any:
    env = standin_environment(endpoint, region)
    # boto3's stubs type `client` per literal service name; this helper serves several.
    make_client: Any = boto3.client
    return make_client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )


def create_table(endpoint: str, table_name: str) -> None:
    """Create the app table from the models (keys, indexes, stream, TTL: one source of truth)."""
    os.environ.update(standin_environment(endpoint))
    bind_models(Settings(table_name=table_name, aws_region=REGION))
    StratusItem.create_table(wait=True)


def create_idempotency_table(endpoint: str, table_name: str) -> None:
    """Powertools idempotency's table, as template.yaml declares it (key `id`, TTL on `expiration`)."""
    dynamodb = aws_client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )


def create_rate_limit_table(endpoint: str, table_name: str) -> None:
    """The rate-limit counters' own table, as template.yaml declares it (RateLimitTable: keys `pk`/`sk`,
    TTL on `expires_at`)."""
    dynamodb = aws_client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


def create_user_pool(endpoint: str, name: str) -> tuple[str, str]:
    cognito = aws_client("cognito-idp", endpoint)
    pool_id: str = cognito.create_user_pool(
        PoolName=name,
        UsernameAttributes=["email"],
        UsernameConfiguration={"CaseSensitive": False},
        AutoVerifiedAttributes=["email"],
        UserAttributeUpdateSettings={"AttributesRequireVerificationBeforeUpdate": ["email"]},
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 12,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
            }
        },
    )["UserPool"]["Id"]
    client_id: str = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=f"{name}-web",
        ExplicitAuthFlows=LOCAL_AUTH_FLOWS,
        GenerateSecret=False,
    )["UserPoolClient"]["ClientId"]
    for group in GROUPS:
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
    return pool_id, client_id


def create_app_secret(endpoint: str, name: str) -> str:
    """The secret the app derives its signing keys from (template.yaml generates it in AWS)."""
    manager = aws_client("secretsmanager", endpoint)
    value = json.dumps({"master_key": secrets.token_urlsafe(48)})
    arn: str = manager.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def create_user(
    endpoint: str, pool_id: str, email: str, password: str, groups: tuple[str, ...] = (), name: str = ""
) -> str:
    """A confirmed user with a permanent password; returns its `sub`."""
    cognito = aws_client("cognito-idp", endpoint)
    attributes = [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]
    if name:
        attributes.append({"Name": "name", "Value": name})
    user = cognito.admin_create_user(
        UserPoolId=pool_id, Username=email, UserAttributes=attributes, MessageAction="SUPPRESS"
    )["User"]
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=password, Permanent=True)
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
    return next(str(a["Value"]) for a in user["Attributes"] if a["Name"] == "sub")


def sign_in(endpoint: str, client_id: str, email: str, password: str) -> dict[str, str]:
    """InitiateAuth with USER_PASSWORD_AUTH: the access, id and refresh tokens."""
    cognito = aws_client("cognito-idp", endpoint)
    result = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )["AuthenticationResult"]
    return {"access": result["AccessToken"], "id": result["IdToken"], "refresh": result["RefreshToken"]}


def provision(endpoint: str, name: str = "stratus-dev") -> LocalResources:
    """Everything the app needs on a fresh stand-in, named after `name`."""
    create_table(endpoint, name)
    create_idempotency_table(endpoint, f"{name}-idempotency")
    create_rate_limit_table(endpoint, f"{name}-ratelimits")
    pool_id, client_id = create_user_pool(endpoint, name)
    secret_arn = create_app_secret(endpoint, f"{name}/app")
    return LocalResources(
        endpoint=endpoint,
        table_name=name,
        user_pool_id=pool_id,
        client_id=client_id,
        secret_arn=secret_arn,
        idempotency_table_name=f"{name}-idempotency",
        rate_limit_table_name=f"{name}-ratelimits",
    )


def seed_demo_users(resources: LocalResources) -> dict[str, str]:
    """Creates the demo users; returns each one's `sub` by demo name."""
    return {
        key: create_user(
            resources.endpoint, resources.user_pool_id, user.email, DEMO_PASSWORD, user.groups, user.name
        )
        for key, user in DEMO_USERS.items()
    }


def seed_demo_data(subjects: dict[str, str]) -> str:
    """A project owned by alice with bob as editor and a few tasks, written through the models (the same
    code the API runs). Returns the project's id."""
    from datetime import date, timedelta

    import models

    alice, bob = subjects["alice"], subjects["bob"]
    project = models.project.create_project(
        models.ids.new_id(), "Launch plan", "Everything between today and the public launch.", alice
    )
    models.project.change_roles(
        project.project_id, alice, bob, new_role="editor", current_role=None, project=project
    )
    today = date.today()
    for title, status, assignee, due, tags in [
        ("Write the announcement", "doing", bob, today + timedelta(days=3), ["marketing"]),
        ("Load-test the API", "todo", alice, today + timedelta(days=7), ["backend", "performance"]),
        ("Review the IAM policies", "todo", bob, today + timedelta(days=5), ["security"]),
        ("Pick a launch date", "done", alice, None, []),
    ]:
        models.task.create_task(
            project.project_id,
            alice,
            {"title": title, "status": status, "assignee": assignee, "due_date": due, "tags": tags},
        )
    return project.project_id
