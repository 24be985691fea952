"""A TCP relay that makes a browser's connections come from another address.

The browser connects to the relay on 127.0.0.1; the relay connects on to
the gateway from `source` (another loopback address), so the gateway sees
the visitor at an address that appears nowhere else in the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class Relay:
    def __init__(self, target: tuple[str, int], source: str) -> None:
        self.target = target
        self.source = source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.upstream_sources: set[str] = set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False

    def serve(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.connect, args=(client,), daemon=True).start()

    def connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(
                self.target, timeout=10, source_address=(self.source, 0)
            )
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self.lock:
            self.upstream_sources.add(upstream.getsockname()[0])
            self.sockets += [client, upstream]
        for reader, writer in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self.pipe, args=(reader, writer), daemon=True
            ).start()

    @staticmethod
    def pipe(reader: socket.socket, writer: socket.socket) -> None:
        try:
            while data := reader.recv(65536):
                writer.sendall(data)
        except OSError:
            pass
        finally:
            for end in (reader, writer):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        """Cut every open connection, as a flaky network would."""
        with self.lock:
            dropped, self.sockets = self.sockets, []
        for end in dropped:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.drop_connections()


@contextmanager
def relay(target: tuple[str, int], source: str) -> Iterator[Relay]:
    running = Relay(target, source)
    threading.Thread(target=running.serve, daemon=True).start()
    try:
        yield running
    finally:
        running.close()
