"""Authentication through a running gateway: each failure's status and problem type."""

from __future__ import annotations

import datetime
import json

from sorna.gateway.testing import Gateway

PROB = "https://api.sorna.io/probs/"


async def test_unsigned_root_and_server_header(gateway: Gateway) -> None:
    api = gateway.admin
    async with api.session.get(api.server.make_url("/v2")) as r:
        assert r.status == 200
        assert await r.json() == {"version": "v2.20170315"}
        assert r.headers["Server"] == "Sorna-API/v2.20170315"
    async with api.session.get(api.server.make_url("/v1")) as r:
        assert r.status == 200


async def test_good_signature_sha256_and_sha1(gateway: Gateway) -> None:
    api = await gateway.api()
    for method in ("HMAC-SHA256", "HMAC-SHA1", "HMAC-SHA512"):
        status, body = await api.json(
            "GET", "/v2/authorize", {"echo": [1, "x"]}, sign_method=method
        )
        assert status == 200, body
        assert body == {"authorized": "yes", "echo": [1, "x"]}


async def test_rate_headers_on_authenticated_response(gateway: Gateway) -> None:
    api = await gateway.api(rate_limit=50)
    async with await api.request("GET", "/v2/authorize") as r:
        assert r.status == 200
        assert r.headers["X-RateLimit-Limit"] == "50"
        assert r.headers["X-RateLimit-Remaining"] == "49"
        assert r.headers["X-RateLimit-Window"] == "900"
        assert r.headers["Server"].startswith("Sorna-API/")


async def expect(api_call: tuple[int, object], status: int, name: str) -> None:
    got_status, body = api_call
    assert got_status == status, body
    assert isinstance(body, dict) and body["type"] == PROB + name, body
    assert body["title"]


async def test_wrong_secret(gateway: Gateway) -> None:
    api = await gateway.api()
    await expect(await api.json("GET", "/v2/authorize", secret="x" * 40), 401, "auth-failed")


async def test_unknown_key(gateway: Gateway) -> None:
    api = await gateway.api()
    await expect(
        await api.json("GET", "/v2/authorize", access_key="AKIAAAAAAAAAAAAAAAAA"),
        401,
        "auth-failed",
    )


async def test_inactive_key_invalidated_within_seconds(gateway: Gateway) -> None:
    api = await gateway.api()
    assert (await api.json("GET", "/v2/authorize"))[0] == 200
    status, _ = await gateway.admin.json("DELETE", f"/v2/admin/keypairs/{api.keypair.access_key}")
    assert status == 200
    await expect(await api.json("GET", "/v2/authorize"), 401, "auth-failed")


async def test_skewed_date(gateway: Gateway) -> None:
    api = await gateway.api()
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)).isoformat()
    await expect(await api.json("GET", "/v2/authorize", date=old), 400, "invalid-auth-params")
    ok = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=14)).isoformat()
    assert (await api.json("GET", "/v2/authorize", date=ok))[0] == 200


async def test_naive_and_rfc1123_dates(gateway: Gateway) -> None:
    api = await gateway.api()
    now = datetime.datetime.now(datetime.UTC)
    naive = now.replace(tzinfo=None).isoformat()
    assert (await api.json("GET", "/v2/authorize", date=naive))[0] == 200
    rfc = now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert (await api.json("GET", "/v2/authorize", date=rfc))[0] == 200


async def test_missing_version_and_mismatch(gateway: Gateway) -> None:
    api = await gateway.api()
    raw = b""
    headers = api.headers("GET", "/v2/authorize", raw)
    del headers["X-Sorna-Version"]
    async with api.session.get(api.server.make_url("/v2/authorize"), headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["type"] == PROB + "invalid-auth-params"
    await expect(
        await api.json("GET", "/v2/authorize", version="v1.20160915"), 400, "invalid-auth-params"
    )
    status, body = await api.json("GET", "/v1/authorize", version="v1.20160915")
    assert status == 200, body


async def test_tampered_body_and_query(gateway: Gateway) -> None:
    api = await gateway.api()
    body = json.dumps({"echo": 1}).encode()
    headers = api.headers("GET", "/v2/authorize", body)
    async with api.session.get(
        api.server.make_url("/v2/authorize"), data=b'{"echo": 2}', headers=headers
    ) as r:
        assert r.status == 401
        assert (await r.json())["type"] == PROB + "auth-failed"
    headers = api.headers("GET", "/v2/kernel/x/files?path=a", b"")
    async with api.session.get(
        api.server.make_url("/v2/kernel/x/files?path=b"), headers=headers
    ) as r:
        assert r.status == 401


async def test_malformed_authorization(gateway: Gateway) -> None:
    api = await gateway.api()
    headers = api.headers("GET", "/v2/authorize")
    headers["Authorization"] = "Bearer abc"
    async with api.session.get(api.server.make_url("/v2/authorize"), headers=headers) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        assert (await r.json())["type"] == PROB + "invalid-auth-params"
    async with api.session.get(api.server.make_url("/v2/authorize")) as r:
        assert r.status == 400


async def test_unknown_route_is_problem(gateway: Gateway) -> None:
    api = gateway.admin
    async with api.session.get(api.server.make_url("/v2/nothing/here")) as r:
        assert r.status == 404
        assert r.content_type == "application/problem+json"
        assert (await r.json())["type"] == PROB + "not-found"
        assert r.headers["Server"] == "Sorna-API/v2.20170315"


async def test_usage_is_batched_into_the_books(gateway: Gateway) -> None:
    from sorna.gateway import keys as K

    api = await gateway.api()
    for _ in range(3):
        assert (await api.json("GET", "/v2/authorize"))[0] == 200
    await gateway.app[K.KEYPAIRS].flush_usage()
    kp = await gateway.app[K.KEYPAIRS].update(api.keypair.access_key)
    assert kp is not None and kp.num_queries == 3 and kp.last_used is not None
