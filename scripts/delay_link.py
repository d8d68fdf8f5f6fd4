#!/usr/bin/env python3
"""A link with a round-trip delay, for kernels without tc netem (scripts/bench-proxy.sh --rtt).

Two TUN devices, forwarded in user space: packets from this host towards the namespace wait
DELAY, packets back pass at once, so a connect and each request/reply exchange cost DELAY
each, as RTT/2 each way would. Sets up:

    this host  HOST_DEV 198.18.0.1/30 --(DELAY)--> NS_DEV 198.18.0.2/30  in namespace NS
               <------------------------------ (no delay)

Usage: delay_link.py NS HOST_DEV NS_DEV DELAY_MS   (root; prints "ready" once up; runs until
killed, and the devices go with it)
"""
import collections
import fcntl
import os
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def drain(fd):
    while True:
        try:
            yield os.read(fd, 65536)
        except BlockingIOError:
            return


def main():
    ns, host_dev, ns_dev, delay_ms = sys.argv[1:5]
    delay = float(delay_ms) / 1000.0
    near, far = tun(host_dev), tun(ns_dev)
    ip("link", "set", ns_dev, "netns", ns)
    ip("addr", "add", "198.18.0.1/30", "dev", host_dev)
    ip("link", "set", host_dev, "up")
    ip("-n", ns, "addr", "add", "198.18.0.2/30", "dev", ns_dev)
    ip("-n", ns, "link", "set", ns_dev, "up")
    print("ready", flush=True)
    # A constant delay keeps the order: a FIFO of (due, packet).
    queue = collections.deque()
    while True:
        wait = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        ready, _, _ = select.select([near, far], [], [], wait)
        now = time.monotonic()
        if near in ready:
            for pkt in drain(near):
                queue.append((now + delay, pkt))
        if far in ready:
            for pkt in drain(far):
                try:
                    os.write(near, pkt)
                except OSError:
                    pass  # a full device queue drops the packet, as a link would
        while queue and queue[0][0] <= now:
            try:
                os.write(far, queue.popleft()[1])
            except OSError:
                pass


if __name__ == "__main__":
    main()
