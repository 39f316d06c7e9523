"""What the template's user pool must say for the app's identity guarantees to hold when deployed."""

from __future__ import annotations

from typing import Any

from tests.cloudformation import load_template


def resources() -> dict[str, Any]:
    template: dict[str, Any] = load_template()
    return dict(template["Resources"])


def test_a_new_email_address_takes_effect_only_once_verified() -> None:
    # Invitations go to verified addresses: claiming someone else's address must not make it one's own.
    pool = resources()["UserPool"]["Properties"]
    assert pool["UserAttributeUpdateSettings"] == {"AttributesRequireVerificationBeforeUpdate": ["email"]}
    assert pool["AutoVerifiedAttributes"] == ["email"]


def test_the_api_function_may_call_only_the_cognito_operations_the_app_makes() -> None:
    statements = resources()["ApiFunctionRole"]["Properties"]["Policies"]
    actions = {
        action
        for policy in statements
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if str(action).startswith("cognito-idp:")
    }
    assert actions == {
        "cognito-idp:AdminGetUser",
        "cognito-idp:ListUsers",
        "cognito-idp:AdminDisableUser",
        "cognito-idp:AdminEnableUser",
        "cognito-idp:AdminAddUserToGroup",
        "cognito-idp:AdminRemoveUserFromGroup",
        "cognito-idp:AdminListGroupsForUser",
        "cognito-idp:AdminUserGlobalSignOut",
    }
