"""Added latency for the datapath section's remote files: a TCP proxy in front of the Azure Blob emulator that
delivers every byte a client sends `delay_s` late (order kept, no bandwidth limit), so each HTTP request to the
emulator, and so each round trip, takes `delay_s` longer. Replies pass straight through. It runs on its own
thread of the bench process; nothing in mpibatch knows it is there: the connection string names its port."""
from __future__ import annotations

import asyncio
import threading
from types import TracebackType


class LatencyProxy:
    """127.0.0.1:port -> 127.0.0.1:target, requests delayed; a context manager that starts and stops it."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="latency-proxy")
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w, self.delay_s), self._pipe(server_r, client_w, 0.0))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
        """Copy reader to writer, each chunk written `delay_s` after it arrived; EOF closes the writer."""
        loop = asyncio.get_running_loop()
        if delay_s <= 0:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        else:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def send() -> None:
                while True:
                    due, data = await queue.get()
                    if not data:
                        return
                    if (wait := due - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()

            sender = asyncio.ensure_future(send())
            try:
                while data := await reader.read(1 << 16):
                    queue.put_nowait((loop.time() + delay_s, data))
                queue.put_nowait((0.0, b""))
                await sender
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        writer.close()
