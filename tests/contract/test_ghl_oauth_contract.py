"""The GhlOAuth contract: castghl's OAuth calls against the local GHL sandbox.

The sandbox is written from HighLevel's documentation, not from the client;
both are checked against HighLevel's oauth.json.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from castghl_adapters.ghl import GhlCredentials, GhlHttpClient
from castghl_core.errors import (
    GhlUnauthorized,
    LocationInactive,
    OAuthNotConfigured,
    TokenRevoked,
)
from castghl_core.installations import UserType

from ghl_openapi import OpenApiFile, open_api

LOCATION = "GKAWb4yu7A4LSc0skQ6g"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
AGENCY = ("LocAlpha000000000001", "LocBravo000000000002", "LocCharlie0000000003")


@pytest.fixture
def sandbox(ghl_sandbox):
    return ghl_sandbox


@pytest.fixture
def credentials(sandbox):
    return GhlCredentials(sandbox.client_id, sandbox.client_secret)


@pytest.fixture
def client(sandbox, session, credentials):
    return GhlHttpClient(
        session, sandbox.base_url, timeout=2.0, credentials=credentials, page_size=2
    )


@pytest.fixture
def oauth_api():
    return open_api("apps/oauth.json")


async def consent(sandbox, session, *, state="s1") -> str:
    """Walk the consent page as a browser would; return the code it hands out."""
    async with session.get(
        f"{sandbox.base_url}/oauth/chooselocation",
        params={
            "response_type": "code",
            "client_id": sandbox.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "conversations/message.write oauth.write",
            "state": state,
        },
        allow_redirects=False,
    ) as answer:
        assert answer.status == 302
        target = urlsplit(answer.headers["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT_URI
    assert query["state"] == [state]
    return query["code"][0]


async def company_token(sandbox, session, client, locations=AGENCY) -> str:
    sandbox.oauth.choose(locations, company=True)
    grant = await client.exchange_code(await consent(sandbox, session), REDIRECT_URI)
    return grant.access_token


# --- authorization codes ------------------------------------------------------


async def test_a_location_install_gives_a_location_token(client, sandbox, session):
    """The code of a location install buys a Location token with a refresh token."""
    sandbox.oauth.choose([LOCATION])

    grant = await client.exchange_code(await consent(sandbox, session), REDIRECT_URI)

    assert grant.user_type is UserType.LOCATION
    assert grant.location_id == LOCATION
    assert grant.company_id == sandbox.company_id
    assert grant.refresh_token
    assert grant.expires_in == 86399
    assert "conversations/message.write" in grant.scopes
    assert sandbox.oauth.live(grant.access_token) is not None


async def test_an_agency_install_gives_a_company_token(client, sandbox, session):
    """A bulk install buys a Company token naming the approved locations."""
    sandbox.oauth.choose(AGENCY, company=True)

    grant = await client.exchange_code(await consent(sandbox, session), REDIRECT_URI)

    assert grant.user_type is UserType.COMPANY
    assert grant.owner_id == sandbox.company_id
    assert grant.location_id is None
    assert grant.approved_locations == AGENCY
    assert grant.is_bulk_installation is True


async def test_a_code_works_once(client, sandbox, session):
    """A second exchange of the same code is "Invalid grant" with a traceId."""
    code = await consent(sandbox, session)
    await client.exchange_code(code, REDIRECT_URI)

    with pytest.raises(TokenRevoked) as caught:
        await client.exchange_code(code, REDIRECT_URI)

    assert "Invalid grant" in str(caught.value)
    assert caught.value.trace_id


async def test_a_code_for_another_redirect_uri_is_refused(client, sandbox, session):
    """The redirect_uri must be the one the consent page was opened with."""
    code = await consent(sandbox, session)

    with pytest.raises(TokenRevoked):
        await client.exchange_code(code, "http://127.0.0.1:9/elsewhere")


async def test_a_wrong_client_secret_is_refused_without_echoing_it(
    sandbox, session, caplog
):
    """Bad client credentials: GhlUnauthorized, the secret in no error or log."""
    caplog.set_level(logging.DEBUG)
    wrong = GhlCredentials(sandbox.client_id, "not-the-secret-at-all")
    client = GhlHttpClient(session, sandbox.base_url, credentials=wrong)
    code = await consent(sandbox, session)

    with pytest.raises(GhlUnauthorized) as caught:
        await client.exchange_code(code, REDIRECT_URI)

    for secret in ("not-the-secret-at-all", code):
        assert secret not in str(caught.value)
        assert all(secret not in repr(vars(r)) for r in caplog.records)


async def test_without_credentials_the_oauth_calls_say_so(sandbox, session):
    """A client built without a client id and secret cannot call OAuth."""
    client = GhlHttpClient(session, sandbox.base_url)

    with pytest.raises(OAuthNotConfigured) as caught:
        await client.refresh("rt", UserType.LOCATION)

    assert "CASTGHL_GHL_CLIENT_ID" in str(caught.value)


# --- refresh ----------------------------------------------------------------------


async def test_a_refresh_rotates_the_pair(client, sandbox):
    """A refresh gives a new pair; the old refresh token is dead at once."""
    issued = sandbox.issue_location_token(LOCATION)

    grant = await client.refresh(issued["refresh_token"], UserType.LOCATION)

    assert grant.access_token != issued["access_token"]
    assert grant.refresh_token not in {None, issued["refresh_token"]}
    assert grant.location_id == LOCATION
    assert sandbox.oauth.refresh_count[LOCATION] == 1
    assert not sandbox.oauth.refresh_token_is_live(issued["refresh_token"])
    assert sandbox.oauth.refresh_token_is_live(grant.refresh_token)


async def test_a_second_use_of_a_refresh_token_is_refused_and_counted(client, sandbox):
    """Reusing a refresh token is "Invalid grant", as at GHL, and counted."""
    issued = sandbox.issue_location_token(LOCATION)
    await client.refresh(issued["refresh_token"], UserType.LOCATION)

    with pytest.raises(TokenRevoked) as caught:
        await client.refresh(issued["refresh_token"], UserType.LOCATION)

    assert "Invalid grant" in str(caught.value)
    assert sandbox.oauth.reused_refresh_tokens == 1
    assert sandbox.oauth.refresh_count[LOCATION] == 1


async def test_an_inactive_location_keeps_its_refresh_token(client, sandbox):
    """ "Location is not active" is LocationInactive; the token works later."""
    issued = sandbox.issue_location_token(LOCATION)
    sandbox.oauth.set_active(LOCATION, active=False)

    with pytest.raises(LocationInactive):
        await client.refresh(issued["refresh_token"], UserType.LOCATION)
    sandbox.oauth.set_active(LOCATION, active=True)
    grant = await client.refresh(issued["refresh_token"], UserType.LOCATION)

    assert grant.access_token


async def test_a_revoked_refresh_token_is_invalid_grant(client, sandbox):
    """After a revocation the refresh token is refused as "Invalid grant"."""
    issued = sandbox.issue_location_token(LOCATION)
    sandbox.oauth.revoke(LOCATION)

    with pytest.raises(TokenRevoked):
        await client.refresh(issued["refresh_token"], UserType.LOCATION)
    assert sandbox.oauth.reused_refresh_tokens == 0


async def test_a_company_token_refreshes_as_a_company(client, sandbox, session):
    """A Company pair refreshes with user_type Company and stays a Company one."""
    sandbox.oauth.choose(AGENCY, company=True)
    first = await client.exchange_code(await consent(sandbox, session), REDIRECT_URI)

    grant = await client.refresh(first.refresh_token, UserType.COMPANY)

    assert grant.user_type is UserType.COMPANY
    assert sandbox.oauth.refresh_count[sandbox.company_id] == 1


# --- location tokens and installed locations --------------------------------------


@pytest.mark.parametrize("with_refresh", [True, False])
async def test_a_company_token_mints_location_tokens(
    client, sandbox, session, with_refresh
):
    """/oauth/locationToken gives a Location token, with or without a refresh."""
    sandbox.oauth.location_tokens_with_refresh = with_refresh
    company = await company_token(sandbox, session, client)

    grant = await client.location_token(company, sandbox.company_id, AGENCY[1])

    assert grant.user_type is UserType.LOCATION
    assert grant.location_id == AGENCY[1]
    assert grant.company_id == sandbox.company_id
    assert (grant.refresh_token is not None) is with_refresh
    assert sandbox.oauth.live(grant.access_token).location_id == AGENCY[1]
    assert sandbox.oauth.mint_count[AGENCY[1]] == 1


async def test_minting_with_a_location_token_is_unauthorized(client, sandbox):
    """Only a Company token mints: a Location token gets 401."""
    location = sandbox.issue_location_token(LOCATION)["access_token"]

    with pytest.raises(GhlUnauthorized):
        await client.location_token(location, sandbox.company_id, LOCATION)


async def test_minting_for_an_inactive_location_is_location_inactive(
    client, sandbox, session
):
    """A paused location cannot get a new token for now."""
    company = await company_token(sandbox, session, client)
    sandbox.oauth.set_active(AGENCY[0], active=False)

    with pytest.raises(LocationInactive):
        await client.location_token(company, sandbox.company_id, AGENCY[0])


async def test_installed_locations_follows_every_page(client, sandbox, session):
    """Five installed locations over pages of two: all five, none uninstalled."""
    installed = [f"LocInstalled{n:08d}" for n in range(5)]
    company = await company_token(sandbox, session, client, installed)
    sandbox.oauth.add_location("LocNotInstalled00001", "Elsewhere")

    found = await client.installed_locations(company, sandbox.company_id)

    assert [location.location_id for location in found] == installed
    assert all(location.name for location in found)


async def test_installed_locations_with_a_dead_company_token_is_unauthorized(
    client, sandbox
):
    """The listing needs a live Company token."""
    with pytest.raises(GhlUnauthorized):
        await client.installed_locations("sbx-at-unknown", sandbox.company_id)


# --- HighLevel's OpenAPI file -------------------------------------------------------


@pytest.fixture
async def recorder(aiohttp_server):
    """A stand-in GHL recording each OAuth request, answering like oauth.json."""
    seen: list[dict[str, object]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "content_type": request.content_type,
                "form": dict(await request.post()),
                "query": dict(request.query),
            }
        )
        if request.path == "/oauth/installedLocations":
            return web.json_response({"locations": [], "count": 0})
        return web.json_response(
            {
                "access_token": "at",
                "expires_in": 86399,
                "userId": "u1",
                "locationId": "l1",
                "companyId": "c1",
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")), seen


def version_enum(api: OpenApiFile, path: str, method: str) -> list[str]:
    operation = api.operation(path, method)
    [version] = [p for p in operation["parameters"] if p["name"] == "Version"]
    return version["schema"]["enum"]


def form_schema(api: OpenApiFile, path: str) -> dict[str, object]:
    content = api.operation(path, "post")["requestBody"]["content"]
    return content["application/x-www-form-urlencoded"]["schema"]


async def test_token_requests_match_openapi(recorder, session, oauth_api):
    """Code and refresh exchanges are form posts fitting GetAccessCodebodyDto."""
    base_url, seen = recorder
    client = GhlHttpClient(
        session, base_url, credentials=GhlCredentials("app1-x", "s3cret")
    )

    await client.exchange_code("code1", REDIRECT_URI)
    await client.refresh("rt1", UserType.COMPANY)

    schema = form_schema(oauth_api, "/oauth/token")
    for request in seen:
        assert (request["method"], request["path"]) == ("POST", "/oauth/token")
        assert request["content_type"] == "application/x-www-form-urlencoded"
        assert "Authorization" not in request["headers"]
        assert oauth_api.problems(request["form"], schema) == []
    assert seen[0]["form"]["grant_type"] == "authorization_code"
    assert seen[0]["form"]["redirect_uri"] == REDIRECT_URI
    assert seen[1]["form"]["grant_type"] == "refresh_token"
    assert seen[1]["form"]["user_type"] == "Company"


async def test_location_token_request_matches_openapi(recorder, session, oauth_api):
    """Minting posts companyId and locationId with the documented Version."""
    base_url, seen = recorder
    client = GhlHttpClient(session, base_url)

    await client.location_token("company-tkn", "c1", "l1")

    [request] = seen
    assert request["path"] == "/oauth/locationToken"
    assert request["headers"]["Authorization"] == "Bearer company-tkn"
    assert request["headers"]["Version"] in version_enum(
        oauth_api, "/oauth/locationToken", "post"
    )
    schema = form_schema(oauth_api, "/oauth/locationToken")
    assert oauth_api.problems(request["form"], schema) == []
    assert request["form"] == {"companyId": "c1", "locationId": "l1"}


async def test_installed_locations_request_matches_openapi(
    recorder, session, oauth_api
):
    """The listing sends companyId, appId (from the client id) and paging."""
    base_url, seen = recorder
    client = GhlHttpClient(
        session, base_url, credentials=GhlCredentials("app1-x", "s3cret")
    )

    await client.installed_locations("company-tkn", "c1")

    [request] = seen
    operation = oauth_api.operation("/oauth/installedLocations", "get")
    documented = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert set(request["query"]) <= documented
    assert request["query"]["appId"] == "app1"
    assert request["query"]["companyId"] == "c1"
    assert request["query"]["isInstalled"] == "true"
    assert request["headers"]["Version"] in version_enum(
        oauth_api, "/oauth/installedLocations", "get"
    )


async def test_sandbox_token_answers_match_openapi(client, sandbox, session, oauth_api):
    """The sandbox's token, location-token and listing answers fit oauth.json."""
    sandbox.oauth.choose(AGENCY, company=True)
    code = await consent(sandbox, session)
    form = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    async with session.post(f"{sandbox.base_url}/oauth/token", data=form) as answer:
        token = await answer.json()
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Version": "2021-07-28",
    }
    async with session.post(
        f"{sandbox.base_url}/oauth/locationToken",
        data={"companyId": sandbox.company_id, "locationId": AGENCY[0]},
        headers=headers,
    ) as answer:
        minted = await answer.json()
    async with session.get(
        f"{sandbox.base_url}/oauth/installedLocations",
        params={"companyId": sandbox.company_id, "appId": sandbox.oauth.app_id},
        headers=headers,
    ) as answer:
        listing = await answer.json()

    for path, method, body in [
        ("/oauth/token", "post", token),
        ("/oauth/locationToken", "post", minted),
        ("/oauth/installedLocations", "get", listing),
    ]:
        schema = oauth_api.response_schema(path, method, 200)
        assert oauth_api.problems(body, schema) == [], path


async def test_sandbox_refuses_a_json_token_request(sandbox, session):
    """The token endpoint takes a form, as documented; JSON is a 422."""
    async with session.post(
        f"{sandbox.base_url}/oauth/token",
        json={"client_id": sandbox.client_id, "grant_type": "refresh_token"},
    ) as answer:
        body = await answer.json()

    assert answer.status == 422
    assert body["traceId"]


async def test_sandbox_errors_match_openapi(client, sandbox, session, oauth_api):
    """A refused refresh has GHL's error shape (BadRequestDTO)."""
    form = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": "sbx-rt-unknown",
    }
    async with session.post(f"{sandbox.base_url}/oauth/token", data=form) as answer:
        body = await answer.json()

    schema = oauth_api.response_schema("/oauth/token", "post", 400)
    assert answer.status == 400
    assert body["message"] == "Invalid grant: refresh token is invalid"
    assert oauth_api.problems(body, schema) == []


async def test_a_refresh_token_echoed_by_ghl_is_redacted(
    aiohttp_server, session, caplog
):
    """Should GHL quote the refresh token, it is in no error and no log."""
    caplog.set_level(logging.DEBUG)
    secret = "sbx-rt-" + "q" * 40

    async def echo(request: web.Request) -> web.Response:
        form = await request.post()
        message = f"Invalid grant: {form['refresh_token']} was used"
        return web.json_response({"statusCode": 400, "message": message}, status=400)

    app = web.Application()
    app.router.add_post("/oauth/token", echo)
    server = await aiohttp_server(app, host="127.0.0.1")
    client = GhlHttpClient(
        session, str(server.make_url("")), credentials=GhlCredentials("a-b", "s")
    )

    with pytest.raises(TokenRevoked) as caught:
        await client.refresh(secret, UserType.LOCATION)

    assert "[redacted]" in str(caught.value)
    assert secret not in str(caught.value)
    assert all(secret not in repr(vars(record)) for record in caplog.records)


async def bare_token_server(aiohttp_server) -> str:
    """A stand-in GHL whose token answer names no owner (no locationId)."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": "at-new", "refresh_token": "rt-new", "expires_in": 600}
        )

    app = web.Application()
    app.router.add_post("/oauth/token", answer)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url(""))


async def test_a_refresh_answer_naming_no_owner_keeps_the_rotated_pair(
    aiohttp_server, session
):
    """GHL rotated the pair: the grant is kept, owned by the owner castghl knows."""
    base_url = await bare_token_server(aiohttp_server)
    client = GhlHttpClient(session, base_url, credentials=GhlCredentials("a-b", "s"))

    grant = await client.refresh(
        "rt-old", UserType.LOCATION, owner_id=LOCATION, company_id="Comp1"
    )

    assert (grant.access_token, grant.refresh_token) == ("at-new", "rt-new")
    assert grant.owner_id == LOCATION
    assert grant.company_id == "Comp1"


async def test_a_refresh_answer_naming_no_owner_is_kept_even_unasked(
    aiohttp_server, session
):
    """Without the owner given, a 2xx with both tokens is still a grant."""
    base_url = await bare_token_server(aiohttp_server)
    client = GhlHttpClient(session, base_url, credentials=GhlCredentials("a-b", "s"))

    grant = await client.refresh("rt-old", UserType.COMPANY)

    assert (grant.access_token, grant.refresh_token) == ("at-new", "rt-new")
