"""The OpenAPI document describes every real route."""

from __future__ import annotations

from sorna.gateway.testing import Gateway


async def test_every_route_is_documented(gateway: Gateway) -> None:
    api = gateway.admin
    async with api.session.get(api.server.make_url("/v2/openapi.json")) as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for path in (
        "/v2",
        "/v2/kernel/create",
        "/v2/kernel/{kernel_id}",
        "/v2/kernel/{kernel_id}/upload",
        "/v2/stream/kernel/{kernel_id}/execute",
        "/v2/stream/kernel/{kernel_id}/pty",
        "/v2/admin/keypairs/{access_key}",
        "/v1/kernel/create",
    ):
        assert path in doc["paths"], path
    assert doc["paths"]["/v2"]["get"]["security"] == []


async def test_openapi_validates() -> None:
    from openapi_spec_validator import validate

    from sorna.gateway.app import create_app
    from sorna.gateway.openapi import document
    from sorna.manager.config import ManagerSettings

    validate(document(create_app(ManagerSettings())))  # type: ignore[arg-type]


async def test_committed_document_is_current() -> None:
    import json
    from pathlib import Path

    from sorna.gateway.app import create_app
    from sorna.gateway.openapi import document
    from sorna.manager.config import ManagerSettings

    committed = json.loads((Path(__file__).parents[1] / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(document(create_app(ManagerSettings()))))
