#!/usr/bin/env python3
"""Holds N idle long connections to a len:be:4 echo server, for scripts/idle-memory.sh.

    idle_clients.py HOST:PORT N

Opens N connections one after the other, makes one 64-byte exchange on each (so that the
server has served it, as a real idle client's connection has been), prints "ready N" on
stdout, then holds them until stdin closes. While holding, every frame the server sends (a
heartbeat ping under `--heartbeat`) is written back unchanged: an empty frame answers an
empty ping. Exits 1 if a connection fails before "ready".
"""

import selectors
import socket
import struct
import sys
import threading

BODY = b"x" * 64
FRAME = struct.pack(">I", len(BODY)) + BODY


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed during the first exchange")
        buf += chunk
    return buf


def open_all(host, port, n):
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(FRAME)
        if read_exact(s, len(FRAME)) != FRAME:
            raise ConnectionError(f"connection {i}: the reply is not the echo")
        s.setblocking(False)
        socks.append(s)
    return socks


def hold(socks, stop):
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                continue
            buf = bufs[s] + data
            while len(buf) >= 4:
                (length,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + length:
                    break
                s.setblocking(True)
                s.sendall(buf[: 4 + length])
                s.setblocking(False)
                buf = buf[4 + length :]
            bufs[s] = buf


def main():
    host, _, port = sys.argv[1].rpartition(":")
    n = int(sys.argv[2])
    try:
        socks = open_all(host, int(port), n)
    except OSError as e:
        print(f"idle_clients: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ready {len(socks)}", flush=True)
    stop = threading.Event()
    t = threading.Thread(target=hold, args=(socks, stop), daemon=True)
    t.start()
    sys.stdin.read()
    stop.set()
    t.join(timeout=2)


if __name__ == "__main__":
    main()
