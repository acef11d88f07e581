"""Whether a server answers: the HTTP status of one GET, over aiohttp.

aiohttp is imported on first use, in a thread: it costs about 0.2 s of imports, which neither
``import vramdeck.manager`` nor the event loop should wait for.
"""

from __future__ import annotations

import asyncio
from types import ModuleType


def _import_aiohttp() -> ModuleType:
    import aiohttp  # a plain import statement, so that PyInstaller's analysis bundles it

    return aiohttp


async def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of ``GET url`` (redirects not followed), or None when nothing answers
    within `timeout_s`. Proxies are never used: the servers listen on loopback."""
    # In a thread every time: a concurrent first import must wait for the module to be whole,
    # and the hop costs far less than the request.
    aiohttp = await asyncio.to_thread(_import_aiohttp)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            status: int = response.status
            return status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
