#!/usr/bin/env python3
"""smpplib (a real SMPP 3.4 client) against `keepwire serve --protocol smpp --receipts`.

Binds as transceiver, submits one message asking for a delivery receipt, reads until it has
the submit_sm_resp, the receipt (deliver_sm, answered by smpplib with deliver_sm_resp) and
an enquire_link from the simulator (answered by smpplib), then unbinds and disconnects.
Prints one line per event and a final `ok ...` line; exits 1 on anything missing.

Usage: smpplib_session.py HOST PORT SYSTEM_ID PASSWORD
"""
import sys
import time

import smpplib.client
import smpplib.consts


def main():
    host, port, system_id, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    seen = {"submit_sm_resp": 0, "receipt": 0, "enquire_link": 0}
    client = smpplib.client.Client(host, port, timeout=10, allow_unknown_opt_params=True)

    answer_enquire_link = client._enquire_link_received

    def on_enquire_link(pdu):
        seen["enquire_link"] += 1
        print("enquire_link seq=%d" % pdu.sequence, flush=True)
        answer_enquire_link(pdu)

    client._enquire_link_received = on_enquire_link

    def on_sent(pdu):
        seen["submit_sm_resp"] += 1
        print("submit_sm_resp status=%d message_id=%s" % (pdu.status, pdu.message_id), flush=True)

    def on_received(pdu):
        if pdu.esm_class & 0x04:
            seen["receipt"] += 1
        print("deliver_sm esm_class=%d text=%r" % (pdu.esm_class, pdu.short_message), flush=True)

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.connect()
    resp = client.bind_transceiver(system_id=system_id, password=password)
    print("bind_transceiver_resp status=%d" % resp.status, flush=True)
    client.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr="10086",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        destination_addr="13800138000",
        short_message=b"hello from smpplib",
        registered_delivery=1,
    )
    deadline = time.monotonic() + 15
    while min(seen.values()) < 1 and time.monotonic() < deadline:
        client.read_once(auto_send_enquire_link=False)
    client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
    unbind_resp = None
    while unbind_resp is None and time.monotonic() < deadline:
        pdu = client.read_pdu()
        if pdu.command == "unbind_resp":
            unbind_resp = pdu
        elif pdu.command == "enquire_link":
            on_enquire_link(pdu)
    client.disconnect()
    if unbind_resp is None or min(seen.values()) < 1:
        print("missing: %r unbind_resp=%r" % (seen, unbind_resp), flush=True)
        return 1
    print("unbind_resp status=%d" % unbind_resp.status, flush=True)
    print("ok submit_sm_resp=%d receipt=%d enquire_link=%d" % (
        seen["submit_sm_resp"], seen["receipt"], seen["enquire_link"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
