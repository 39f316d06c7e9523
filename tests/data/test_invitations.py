"""Invitations by email address against the stand-in's Cognito: only the person who signs in with that
address, verified, joins; nobody learns from the answers who has an account."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import DEMO_PASSWORD, LocalResources, aws_client, create_user, sign_in

import models
from tests.data.helpers import Team, User, assert_problem, bearer, new_project
from tests.test_identity import create_key


def invite(client: TestClient, owner: User, project_id: str, email: str, role: str = "editor") -> Any:
    return client.post(
        f"/projects/{project_id}/invitations", headers=bearer(owner), json={"email": email, "role": role}
    )


def person(aws_resources: LocalResources, email: str, *, verified: bool = True) -> User:
    """A user signed in with `email` as their address, verified or merely claimed."""
    sub = create_user(aws_resources.endpoint, aws_resources.user_pool_id, email, DEMO_PASSWORD)
    if not verified:
        aws_client("cognito-idp", aws_resources.endpoint).admin_update_user_attributes(
            UserPoolId=aws_resources.user_pool_id,
            Username=email,
            UserAttributes=[{"Name": "email_verified", "Value": "false"}],
        )
    tokens = sign_in(aws_resources.endpoint, aws_resources.client_id, email, DEMO_PASSWORD)
    return {"email": email, "sub": sub, **tokens}


def claimant(aws_resources: LocalResources, claimed: str) -> User:
    """Someone who signed up with their own address and then set it to `claimed`, unverified: what anyone
    can do before Cognito's AttributesRequireVerificationBeforeUpdate is on (and what the stand-in lets
    through even with it)."""
    own = f"claimant-{uuid.uuid4().hex}@example.org"
    user = person(aws_resources, own)
    aws_client("cognito-idp", aws_resources.endpoint).admin_update_user_attributes(
        UserPoolId=aws_resources.user_pool_id,
        Username=user["sub"],
        UserAttributes=[{"Name": "email", "Value": claimed}, {"Name": "email_verified", "Value": "false"}],
    )
    return user


def address() -> str:
    return f"newhire-{uuid.uuid4().hex}@corp.example"


def my_invitations(client: TestClient, user: User) -> list[dict[str, Any]]:
    response = client.get("/me/invitations", headers=bearer(user))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_an_invitee_with_the_verified_address_accepts_and_joins(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invited = invite(client, team.owner, team.id, email, role="editor")
    assert invited.status_code == 201, invited.text
    invitation = invited.json()
    assert (invitation["email"], invitation["role"], invitation["project_id"]) == (email, "editor", team.id)
    newcomer = person(aws_resources, email)
    assert_problem(client.get(team.path, headers=bearer(newcomer)), 404, "not-found")
    (listed,) = my_invitations(client, newcomer)
    assert (listed["id"], listed["project_name"]) == (invitation["id"], team.project["name"])

    accepted = client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer))
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["id"], accepted.json()["my_role"]) == (team.id, "editor")
    assert accepted.headers["location"] == team.path
    assert client.get(team.path, headers=bearer(newcomer)).json()["my_role"] == "editor"
    # Used up: gone from both lists, and a second accept is a 404.
    assert my_invitations(client, newcomer) == []
    assert client.get(f"{team.path}/invitations", headers=bearer(team.owner)).json()["items"] == []
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer)), 404)


def test_an_unverified_copy_of_an_address_never_gains_access(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email).json()
    # Addresses compare case-folded, so this is the same address. (The stand-in keeps an exact spelling
    # to one account, so the exact copy is tested below, where nobody else holds it.)
    impostor = claimant(aws_resources, email.upper())

    def locked_out() -> None:
        assert my_invitations(client, impostor) == []
        refused = client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(impostor))
        assert_problem(refused, 404, "not-found")
        assert_problem(client.delete(f"/invitations/{invitation['id']}", headers=bearer(impostor)), 404)
        assert_problem(client.get(team.path, headers=bearer(impostor)), 404, "not-found")
        assert_problem(client.get(f"{team.path}/tasks", headers=bearer(impostor)), 404, "not-found")

    locked_out()
    owner_of_address = person(aws_resources, email)
    assert (
        client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(owner_of_address)).status_code
        == 200
    )
    locked_out()
    members = client.get(f"{team.path}/members", headers=bearer(team.owner)).json()["items"]
    assert impostor["sub"] not in {member["subject"] for member in members}


def test_an_exact_unverified_claim_of_an_invited_address_gains_nothing(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email).json()
    impostor = claimant(aws_resources, email)
    assert my_invitations(client, impostor) == []
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(impostor)), 404)
    assert_problem(client.get(team.path, headers=bearer(impostor)), 404)


def test_an_address_that_was_never_verified_cannot_accept(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email).json()
    unverified = person(aws_resources, email, verified=False)
    assert my_invitations(client, unverified) == []
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(unverified)), 404)
    assert_problem(client.get(team.path, headers=bearer(unverified)), 404)


def test_addresses_compare_case_folded(client: TestClient, team: Team, aws_resources: LocalResources) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email.upper()).json()
    newcomer = person(aws_resources, email)
    assert [item["id"] for item in my_invitations(client, newcomer)] == [invitation["id"]]
    assert client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer)).status_code == 200


def test_inviting_answers_the_same_whoever_has_an_account(
    client: TestClient, team: Team, aws_resources: LocalResources, make_user: Any
) -> None:
    existing = make_user()
    unverified = address()
    person(aws_resources, unverified, verified=False)
    answers = [
        invite(client, team.owner, team.id, email) for email in (address(), existing["email"], unverified)
    ]
    varying = {"id", "email", "created_at", "expires_at"}
    shapes = [
        (answer.status_code, sorted(answer.headers.keys() - {"x-request-id", "content-length"}))
        for answer in answers
    ]
    assert len(set(map(str, shapes))) == 1, shapes
    bodies = [{k: v for k, v in answer.json().items() if k not in varying} for answer in answers]
    assert bodies[0] == bodies[1] == bodies[2]


def test_inviting_an_address_twice_answers_the_pending_invitation(client: TestClient, team: Team) -> None:
    email = address()
    first = invite(client, team.owner, team.id, email).json()
    again = invite(client, team.owner, team.id, email.upper())
    assert again.status_code == 201
    assert again.json()["id"] == first["id"]
    listed = client.get(f"{team.path}/invitations", headers=bearer(team.owner)).json()["items"]
    assert [item["id"] for item in listed] == [first["id"]]


def test_only_owners_invite_list_and_revoke(client: TestClient, team: Team, outsider: User) -> None:
    email = address()
    for member in (team.editor, team.viewer):
        assert_problem(invite(client, member, team.id, email), 403, "forbidden")
        assert_problem(client.get(f"{team.path}/invitations", headers=bearer(member)), 403, "forbidden")
    assert_problem(invite(client, outsider, team.id, email), 404, "not-found")
    assert_problem(client.get(f"{team.path}/invitations", headers=bearer(outsider)), 404, "not-found")
    invitation = invite(client, team.owner, team.id, email).json()
    revoking = f"{team.path}/invitations/{invitation['id']}"
    assert_problem(client.delete(revoking, headers=bearer(team.editor)), 403, "forbidden")
    assert client.delete(revoking, headers=bearer(team.owner)).status_code == 204
    assert_problem(client.delete(revoking, headers=bearer(team.owner)), 404, "not-found")


def test_a_revoked_or_declined_invitation_cannot_be_accepted(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    revoked_address, declined_address = address(), address()
    revoked = invite(client, team.owner, team.id, revoked_address).json()
    declined = invite(client, team.owner, team.id, declined_address).json()
    client.delete(f"{team.path}/invitations/{revoked['id']}", headers=bearer(team.owner))
    revoked_invitee = person(aws_resources, revoked_address)
    assert_problem(client.post(f"/invitations/{revoked['id']}/accept", headers=bearer(revoked_invitee)), 404)
    declining = person(aws_resources, declined_address)
    assert client.delete(f"/invitations/{declined['id']}", headers=bearer(declining)).status_code == 204
    assert_problem(client.post(f"/invitations/{declined['id']}/accept", headers=bearer(declining)), 404)
    assert_problem(client.get(team.path, headers=bearer(declining)), 404)


def test_an_expired_invitation_is_neither_listed_nor_accepted(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email).json()
    # TTL deletes lazily: an expired item may still be on the table, and must count for nothing.
    project_id, suffix = invitation["id"].split(".")
    item = models.invitation.get_invitation(project_id, suffix)
    assert item is not None
    item.update(
        actions=[models.invitation.Invitation.expires_at.set(datetime.now(UTC) - timedelta(seconds=1))]
    )
    newcomer = person(aws_resources, email)
    assert my_invitations(client, newcomer) == []
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer)), 404)
    assert client.get(f"{team.path}/invitations", headers=bearer(team.owner)).json()["items"] == []


def test_an_invitation_from_an_owner_who_no_longer_owns_the_project_is_void(
    client: TestClient, owner: User, editor: User, aws_resources: LocalResources
) -> None:
    project = new_project(client, owner)
    email = address()
    for member, role in ((editor, "owner"),):
        client.post(
            f"/projects/{project['id']}/members",
            headers=bearer(owner),
            json={"subject": member["sub"], "role": role},
        )
    invitation = invite(client, editor, project["id"], email).json()
    demoted = client.patch(
        f"/projects/{project['id']}/members/{editor['sub']}", headers=bearer(owner), json={"role": "viewer"}
    )
    assert demoted.status_code == 200, demoted.text
    newcomer = person(aws_resources, email)
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer)), 404)
    assert_problem(client.get(f"/projects/{project['id']}", headers=bearer(newcomer)), 404)


def test_a_member_accepting_again_is_a_conflict_and_uses_the_invitation_up(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    newcomer = person(aws_resources, email)
    client.post(f"{team.path}/members", headers=bearer(team.owner), json={"subject": newcomer["sub"]})
    invitation = invite(client, team.owner, team.id, email).json()
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=bearer(newcomer)), 409)
    assert my_invitations(client, newcomer) == []


def test_invitations_are_accepted_by_people_signed_in_not_by_api_keys(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    email = address()
    invitation = invite(client, team.owner, team.id, email).json()
    newcomer = person(aws_resources, email)
    key = create_key(client, newcomer, scopes=["stratus/read", "stratus/write"])
    with_key = {"X-API-Key": key["secret"]}
    assert_problem(client.post(f"/invitations/{invitation['id']}/accept", headers=with_key), 403, "forbidden")
    assert_problem(client.get("/me/invitations", headers=with_key), 403, "forbidden")


def test_a_project_has_a_bounded_number_of_pending_invitations(
    client: TestClient, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.invitation, "MAX_PENDING", 3)
    project = new_project(client, owner)
    for _ in range(3):
        assert invite(client, owner, project["id"], address()).status_code == 201
    assert_problem(invite(client, owner, project["id"], address()), 409, "conflict")


def test_invitation_ids_and_addresses_are_validated_at_the_edge(client: TestClient, team: Team) -> None:
    for bad in ("not-an-address", "a@b", "two@@example.com", "tab\t@example.com", "x" * 250 + "@example.com"):
        assert_problem(invite(client, team.owner, team.id, bad), 422, "validation-error")
    for bad_id in ("x[", f"{team.id}.x]y", "A" * 53):
        response = client.post(f"/invitations/{bad_id}/accept", headers=bearer(team.owner))
        assert response.status_code in {404, 422}, response.text
        assert response.headers["content-type"] == "application/problem+json"
