"""The web server inside the gateway process: uvicorn on the gateway's own event loop.

uvicorn's own signal handling is switched off: the gateway owns SIGTERM/SIGHUP and stops the server as
one of its parts. Open event streams are ended first on a stop, so the server does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Generator
from typing import Any

import uvicorn

log = logging.getLogger("floorgate.web")


class WebStartError(Exception):
    """The pages cannot be served (the port taken, an address not on this box): the gateway stops, saying why
    in one line instead of a traceback."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    name = "web"

    def __init__(self, app: Any) -> None:
        from gateway.web.api import create_app

        self.gateway = app
        http = app.cfg.http
        self.asgi = create_app(app)
        ssl: dict[str, Any] = {}
        if http.tls_cert_file and http.tls_key_file:
            ssl = {"ssl_certfile": http.tls_cert_file, "ssl_keyfile": http.tls_key_file}
        self.config = uvicorn.Config(self.asgi, host=http.host, port=http.port, log_config=None, access_log=False,
                                     lifespan="off", server_header=False, timeout_graceful_shutdown=3, **ssl)
        self.server = _Server(self.config)
        self._served = asyncio.Event()

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for s in servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return int(self.config.port)

    async def run(self) -> None:
        sampler = asyncio.create_task(self.asgi.state.web.live.run_sampler(), name="web-trend")
        try:
            await self._serve()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    async def _serve(self) -> None:
        where = f"{self.config.host}:{self.config.port}"
        try:
            await self.server.serve()
        except SystemExit as e:  # uvicorn exits the process when it cannot bind; we report instead
            cause = e.__context__
            code = cause.errno if isinstance(cause, OSError) else None
            if code == errno.EADDRINUSE:
                hint = "the port is in use by another program: stop it, or set [http] port"
            elif code == errno.EADDRNOTAVAIL:
                hint = "that address is not one of this box's: set [http] host (0.0.0.0 for every interface)"
            elif code == errno.EACCES:
                hint = "a port below 1024 needs privileges: set [http] port to 1024 or above"
            else:
                hint = f"{cause}" if cause is not None else "check [http] host and port"
            raise WebStartError(f"the web server could not listen on {where}: {hint}") from None
        finally:
            self.server.should_exit = True
            self._served.set()
        if not self.server.started:
            raise WebStartError(f"the web server could not start on {where}")
        await asyncio.Event().wait()  # stopped by shutdown(); the part stays until cancelled

    async def shutdown(self) -> None:
        """End the event streams, stop accepting, close the listening socket, then let the part be cancelled."""
        self.asgi.state.web.live.close()
        self.server.should_exit = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._served.wait()
