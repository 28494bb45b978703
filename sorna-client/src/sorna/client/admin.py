"""``AsyncAdmin``: the admin API (admin keypairs only; others get :class:`Forbidden`)."""

from __future__ import annotations

from typing import Any

from .exceptions import ProtocolError
from .session import AsyncSession


class AsyncAdmin:
    """Keypair, agent and kernel listings of the whole service, through ``session``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def keypairs(self) -> list[dict[str, Any]]:
        """List every keypair (secrets are never listed)."""
        return await self._list("keypairs", "keypairs")

    async def create_keypair(
        self,
        *,
        concurrency_limit: int | None = None,
        rate_limit: int | None = None,
        is_admin: bool | None = None,
    ) -> dict[str, Any]:
        """Create a keypair; the answer is the only place its secret key is shown."""
        body = {
            k: v
            for k, v in (
                ("concurrencyLimit", concurrency_limit),
                ("rateLimit", rate_limit),
                ("isAdmin", is_admin),
            )
            if v is not None
        }
        url = self.session.url("admin", "keypairs")
        return (await self.session.request("POST", url, json_body=body)).json_object()

    async def modify_keypair(self, access_key: str, **changes: Any) -> None:
        """Change a keypair's limits or active flag (camelCase fields as API.md)."""
        url = self.session.url("admin", "keypairs", access_key)
        await self.session.request("PATCH", url, json_body=changes)

    async def deactivate_keypair(self, access_key: str) -> None:
        """Deactivate a keypair."""
        await self.session.request("DELETE", self.session.url("admin", "keypairs", access_key))

    async def agents(self) -> list[dict[str, Any]]:
        """List the agents in the registry."""
        return await self._list("agents", "agents")

    async def kernels(self) -> list[dict[str, Any]]:
        """List the live kernels."""
        return await self._list("kernels", "kernels")

    async def _list(self, path: str, member: str) -> list[dict[str, Any]]:
        data = (await self.session.request("GET", self.session.url("admin", path))).json()
        items = data.get(member) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ProtocolError(f"unexpected {path} listing: {data!r:.200}")
        return [i for i in items if isinstance(i, dict)]
