# The far peer of the fault suite when it must crash without a FIN (SO_LINGER 0, so a
# kill sends at most a RST, which the suite drops) or half-close on cue (SIGUSR1:
# shutdown(SHUT_WR), then silence). It echoes every byte, which under len:ascii:4 answers
# each request with itself and each empty heartbeat frame with one.
#   python3 peer.py server HOST PORT   listen; prints "ready" once listening
#   python3 peer.py client HOST PORT   connect, one request; prints "ready" on its reply
#   python3 peer.py stuck HOST PORT    listen with a backlog of 1 and never accept
#   python3 peer.py flood HOST PORT    open 50 connections at once, hold them
#   python3 peer.py slow HOST PORT     start a frame and send a byte of it every 300 ms
import signal, socket, struct, sys, threading

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
conns, half = [], [False]


def on_usr1(*_):
    half[0] = True
    for c in conns:
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass


signal.signal(signal.SIGUSR1, on_usr1)


def adopt(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conns.append(c)


def echo(c):
    while True:
        try:
            d = c.recv(65536)
        except OSError:
            return
        if not d:
            return
        if not half[0]:
            c.sendall(d)


if mode == "stuck":
    ls = socket.socket()
    ls.bind((host, port))
    ls.listen(1)
    print("ready", flush=True)
    signal.pause()
elif mode == "flood":
    held = []
    for _ in range(50):
        try:
            held.append(socket.create_connection((host, port), timeout=2))
        except OSError:
            pass
    print("ready", flush=True)
    signal.pause()
elif mode == "slow":
    import time
    c = socket.create_connection((host, port))
    print("ready", flush=True)
    try:
        for b in b"0009trickling":
            c.send(bytes([b]))
            time.sleep(0.3)
    except OSError:
        pass
    signal.pause()
elif mode == "server":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        adopt(c)
        threading.Thread(target=echo, args=(c,), daemon=True).start()
else:
    c = socket.create_connection((host, port))
    adopt(c)
    c.sendall(b"0005hello")
    got = b""
    while len(got) < 9:
        d = c.recv(9 - len(got))
        if not d:
            sys.exit(1)
        got += d
    print("ready", flush=True)
    echo(c)
    signal.pause()
