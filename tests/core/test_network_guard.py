"""The suite's network guard: loopback is reachable, nothing else is (not even by name)."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from support.network import NetworkGuardError


def test_loopback_connections_work() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            accepted.append(conn.recv(5))

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(("localhost", port), timeout=5) as c:
        c.sendall(b"hello")
    t.join(5)
    server.close()
    assert accepted == [b"hello"]


@pytest.mark.parametrize("address", [("10.255.255.1", 443), ("192.0.2.1", 80), ("8.8.8.8", 53)])
def test_other_addresses_are_refused_before_connecting(address: tuple[str, int]) -> None:
    with socket.socket() as s, pytest.raises(NetworkGuardError, match=re.escape(address[0])):
        s.connect(address)


def test_names_other_than_localhost_are_not_resolved() -> None:
    with pytest.raises(NetworkGuardError, match=r"example\.org"):
        socket.getaddrinfo("example.org", 443)
    with pytest.raises(NetworkGuardError, match=r"pypi\.org"):
        socket.create_connection(("pypi.org", 443), timeout=1)
