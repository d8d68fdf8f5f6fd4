#!/usr/bin/env python3
"""cmppy (a real CMPP 3.0 short-link client) against `keepwire serve --protocol cmpp3`.

One Cmppy.request: connects, CONNECT (MD5 authenticator), SUBMIT, reads SUBMIT_RESP,
TERMINATE, reads TERMINATE_RESP, closes. Prints the SUBMIT_RESP and a final `ok` line;
exits 1 when the login or the submit fails.

Usage: cmppy_short.py HOST PORT SP_ID SECRET
"""
import sys

import cmppy
from cmppy.request import SubmitReq


def main():
    host, port, sp_id, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    client = cmppy.Cmppy(host, port, sp_id, secret)
    res = client.request(SubmitReq(sp_id, "hello", dest_terminal_id=["13800138000"]))
    if res is None:
        print("login refused", flush=True)
        return 1
    print("submit_resp command_id=0x%08x seq=%d msg_id=%d result=%d" % (
        res.command_id, res.sequence, res.msg_id, res.result), flush=True)
    if res.command_id != 0x80000004 or res.result != 0:
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
