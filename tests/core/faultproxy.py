"""A TCP proxy between the app and PostgreSQL that a test turns into a bad day.

    proxy = FaultProxy("127.0.0.1", 5432)
    await proxy.start()              # listens on 127.0.0.1:proxy.port, passes everything through
    proxy.refuse()                   # new connections are refused (nothing listens)
    proxy.reset()                    # every connection, open or new, is reset (RST)
    proxy.freeze()                   # black hole: connections are accepted, nothing is forwarded
    proxy.reset_on_commit()          # the next COMMIT is not forwarded: its connection is reset
    await proxy.restore()            # pass-through again (frozen bytes flow on)
    await proxy.close()

    proxy.round_trips, proxy.simple_queries   # what the clients asked of the server (see below)

The client's side of the PostgreSQL protocol is read message by message, so a fault can hit one
query: a simple query ('Q') whose text is COMMIT, as asyncpg sends it. That needs the protocol in
clear: connect with `ssl=disable` (an SSLRequest that the server declines is fine).
"""

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Mode = Literal["pass", "refuse", "reset", "freeze"]

# Messages sent before the typed ones, identified by their code (no type byte).
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, not a FIN: what a killed server or a dropped route looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection to PostgreSQL."""

    def __init__(self, proxy: "FaultProxy", client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        _rst(self.client)
        if self.upstream is not None:
            _rst(self.upstream)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.mode: Mode = "pass"
        self.commits_reset = 0
        self.commits_seen = 0
        # Each Sync (the end of an extended-protocol exchange) and each simple query waits for
        # the server's ReadyForQuery: one round trip. Simple queries are how asyncpg sends BEGIN,
        # COMMIT, ROLLBACK and SQLAlchemy's ping; their texts are kept.
        self.round_trips = 0
        self.simple_queries: list[str] = []
        self._reset_next_commit = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    # --- control ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    def refuse(self) -> None:
        """Stop listening: new connections are refused; open ones are reset, as when the server
        was killed."""
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    def reset(self) -> None:
        """Reset every open connection, and each new one as soon as it is accepted."""
        self.mode = "reset"
        self._flowing.set()
        self._reset_all()

    def freeze(self) -> None:
        """Accept connections but forward nothing either way, as a stopped (SIGSTOP) server."""
        self.mode = "freeze"
        self._flowing.clear()

    def reset_on_commit(self) -> None:
        """Reset the connection that sends the next COMMIT, instead of forwarding it."""
        self._reset_next_commit = True

    async def restore(self) -> None:
        self.mode = "pass"
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._flowing.set()
        for link in list(self._links):
            link.reset()
            for task in link.tasks:
                task.cancel()
        tasks = [task for link in self._links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- plumbing --------------------------------------------------------------------------

    async def _listen(self) -> None:
        # SO_REUSEADDR (asyncio's default on Unix): the same port again after `refuse()`.
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode in ("reset", "refuse"):
            _rst(writer)
            return
        link = _Link(self, writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a frozen server does not even answer the handshake
            if self.mode != "pass":
                link.reset()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                link.reset()
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._client_to_server(link, reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for stream in (writer, link.upstream):
                if stream is not None:
                    stream.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    async def _client_to_server(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Forward the client's messages one at a time, watching for COMMIT."""
        typed = False
        try:
            while True:
                if typed:
                    header = await reader.readexactly(5)
                    kind, length = header[:1], struct.unpack("!i", header[1:])[0]
                else:
                    header = await reader.readexactly(4)
                    kind, length = b"", struct.unpack("!i", header)[0]
                body = await reader.readexactly(length - 4)
                if not typed:
                    code = struct.unpack("!i", body[:4])[0] if len(body) >= 4 else 0
                    # The startup message ends the untyped part; SSL/GSS requests come before it.
                    typed = code not in (_SSL_REQUEST, _GSSENC_REQUEST)
                if kind in (b"Q", b"S"):
                    self.round_trips += 1
                if kind == b"Q":
                    self.simple_queries.append(body.rstrip(b"\0").decode(errors="replace"))
                if kind == b"Q" and body.rstrip(b"\0; \n").strip().upper() == b"COMMIT":
                    self.commits_seen += 1
                    if self._reset_next_commit:
                        self._reset_next_commit = False
                        self.commits_reset += 1
                        link.reset()
                        return
                await self._flowing.wait()
                writer.write(header + body)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
