"""HttpPressure: unread bytes on a watched socket, or a request being answered, make HTTP work wait."""

from __future__ import annotations

import asyncio
import socket
import time

from servertrack.api.http_pressure import HttpPressure
from servertrack.collector.turns import YIELD_SECONDS, give_way


def test_unread_bytes_or_a_pending_connection_press_and_reading_them_releases() -> None:
    pressure = HttpPressure()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        pressure.watch(listener.fileno())
        assert not pressure.waiting()
        client = socket.create_connection(listener.getsockname())
        deadline = time.monotonic() + 5
        while not pressure.waiting():  # the connection waits to be accepted
            assert time.monotonic() < deadline
        served, _ = listener.accept()
        assert not pressure.waiting()
        pressure.watch(served.fileno())
        pressure.watch(served.fileno())  # watching twice is harmless
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        while not pressure.waiting():
            assert time.monotonic() < deadline
        served.recv(1024)
        assert not pressure.waiting()
        pressure.answering += 1  # headers read, answer not finished
        assert pressure.waiting()
        pressure.answering -= 1
        served.close()  # a closed socket leaves the set: nothing presses
        client.close()
        assert not pressure.waiting()
    finally:
        listener.close()
        pressure.close()


def test_giving_way_lasts_while_work_waits_and_never_longer_than_its_bound() -> None:
    async def scenario() -> None:
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        waiting_until = [3]
        await give_way(lambda: turns < waiting_until[0], time.monotonic)
        assert turns >= 3  # the loop turned until nothing waited
        started = time.monotonic()
        await give_way(lambda: True, time.monotonic)  # always pressed: bounded
        assert time.monotonic() - started < YIELD_SECONDS + 0.5
        before = turns
        await give_way(lambda: False, time.monotonic)  # nothing waits: no yield at all
        assert turns == before
        other.cancel()

    asyncio.run(scenario())


def test_the_server_counts_a_request_from_its_headers_to_its_end_however_it_ends() -> None:
    from servertrack.api import make_app
    from servertrack.api.http_server import GuardedHTTPServer, HttpLimits
    from servertrack.common.aggregator import Aggregator
    from servertrack.common.batch import PendingBatch
    from servertrack.common.inventory import AgentInventory
    from servertrack.common.stats import IngestStats

    async def scenario() -> None:
        import tornado.netutil

        pressure = HttpPressure()
        app = make_app(Aggregator(100), PendingBatch(), AgentInventory(100), IngestStats())
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        server = GuardedHTTPServer(app, HttpLimits(), descriptor_limit=10_000, pressure=pressure)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]

        async def settle(answering: int) -> None:
            deadline = time.monotonic() + 5
            while pressure.answering != answering or (answering == 0 and pressure.waiting()):
                assert time.monotonic() < deadline, (pressure.answering, pressure.waiting())
                await asyncio.sleep(0.01)

        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
            await settle(0)  # answered, connection kept alive and idle: nothing presses
            writer.write(b"POST /loads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50\r\n\r\n{\"samp")
            await settle(1)  # headers in, body still coming: a request is being answered
            writer.close()  # the client gives up half-way
            await settle(0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n")
            assert b"400" in await reader.readuntil(b"\r\n\r\n")  # refused by the edge
            await settle(0)
            writer.close()
        finally:
            server.stop()
            await server.close_all_connections()
            pressure.close()

    asyncio.run(scenario())


def test_a_finished_answer_its_client_reads_slowly_no_longer_presses() -> None:
    import tornado.netutil
    import tornado.web

    from servertrack.api import make_app
    from servertrack.api.http_server import GuardedHTTPServer, HttpLimits
    from servertrack.common.aggregator import Aggregator
    from servertrack.common.batch import PendingBatch
    from servertrack.common.inventory import AgentInventory
    from servertrack.common.stats import IngestStats

    class BigAnswer(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write(b"x" * (8 * 1024 * 1024))  # far more than the socket buffers hold

    async def scenario() -> None:
        pressure = HttpPressure()
        app = make_app(Aggregator(100), PendingBatch(), AgentInventory(100), IngestStats())
        app.add_handlers(r".*", [(r"/big", BigAnswer)])
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        server = GuardedHTTPServer(app, HttpLimits(), descriptor_limit=10_000, pressure=pressure)
        server.add_sockets(sockets)
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        slow.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(slow, sockets[0].getsockname())
            slow.send(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            deadline = time.monotonic() + 5
            while server.open_connections != 1 or pressure.answering != 0 or pressure.waiting():
                assert time.monotonic() < deadline, (server.open_connections, pressure.answering)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            # the answer is still being written to a client that reads nothing, and nothing presses
            assert server.open_connections == 1 and not pressure.waiting()
        finally:
            slow.close()
            server.stop()
            await server.close_all_connections()
            pressure.close()

    asyncio.run(scenario())
