#!/usr/bin/env python3
"""pyiso8583 (the reference ISO 8583 codec from PyPI) for tests/iso8583_interop.rs.

Two modes, both on stdout one line per message, every value as lowercase hex of its bytes
(a binary field's raw bytes; an ASCII field's characters):

  pyiso8583_cases.py cases
      Messages pyiso8583 builds for its `default` (printed as spec `binary`) and
      `default_ascii` (spec `ascii`) tables:
      CASE <spec> <name> <wire hex> <mti hex> <field>:<value hex> ...

  pyiso8583_cases.py decode
      Reads `<spec> <wire hex>` lines on stdin (messages keepwire encoded); decodes each with
      pyiso8583 and encodes the result again:
      DECODED <wire hex of pyiso8583's re-encoding> <mti hex> <field>:<value hex> ...
      or `ERROR <message>` when pyiso8583 refuses it.
"""
import random
import sys

import iso8583
from iso8583.specs import default, default_ascii

SPECS = {"binary": default, "ascii": default_ascii}


def is_binary(spec, field):
    return spec[field]["data_enc"] == "b"


def value_hex(spec, field, value):
    if is_binary(spec, field):
        return bytes.fromhex(value).hex()
    return value.encode("ascii").hex()


def line_of(spec, doc):
    parts = [doc["t"].encode("ascii").hex()]
    for k in sorted((k for k in doc if k.isdigit() and k != "1"), key=int):
        parts.append("%s:%s" % (k, value_hex(spec, k, doc[k])))
    return " ".join(parts)


def random_value(rng, spec, field):
    """A value for `field` that its spec accepts: the fixed size or a random length."""
    f = spec[field]
    size = f["max_len"] if f["len_type"] == 0 else rng.randint(0, f["max_len"])
    if is_binary(spec, field):
        return bytes(rng.randrange(256) for _ in range(size)).hex().upper()
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ abcxyz=-./"
    return "".join(rng.choice(alphabet) for _ in range(size))


def named_cases(spec):
    mac = "0123456789ABCDEF"
    pin = "00FF11EE22DD33CC"
    icc = "9F2608C2D4E6F80A1B2C3D9F2701809F100706010A03A0A800"
    # Binary fields are hex text in both tables: pyiso8583's `default` packs it into bytes,
    # `default_ascii` sends the text.
    return [
        ("echo_0800_secondary_bitmap", {"t": "0800", "7": "1201120000", "11": "000001", "70": "301"}),
        ("sign_on_0800", {"t": "0800", "7": "1201120000", "11": "000002", "70": "001"}),
        ("echo_response_0810", {"t": "0810", "7": "1201120000", "11": "000001", "39": "00", "70": "301"}),
        ("purchase_0200_primary_only", {
            "t": "0200", "2": "4111111111111111", "3": "000000", "4": "000000001000",
            "7": "1201120000", "11": "000123", "12": "120000", "13": "1201", "14": "2512",
            "22": "051", "25": "00", "35": "4111111111111111=25121010000012345678",
            "37": "000000123456", "41": "TERM0001", "42": "MERCHANT0000001",
            "43": "A SHOP IN TOWN                          ", "49": "978",
            "52": pin}),
        ("purchase_response_0210_icc_mac", {
            "t": "0210", "2": "4111111111111111", "3": "000000", "4": "000000001000",
            "11": "000123", "38": "A1B2C3", "39": "00", "41": "TERM0001",
            "55": icc, "64": mac}),
        ("authorisation_0100_secondary", {
            "t": "0100", "2": "5500000000000004", "3": "300000", "4": "000000099999",
            "11": "999999", "32": "12345678901", "36": "3" * 104, "48": "ADDITIONAL DATA 48",
            "90": "0" * 42, "102": "ACCOUNT-1", "128": mac}),
        ("reversal_0400_long_lllvar", {
            "t": "0400", "2": "4111111111111111", "3": "000000", "4": "000000001000",
            "11": "000124", "37": "000000123456", "90": "0200000123120112000000000012345000000000000"[:42],
            "96": mac, "127": "R" * 500}),
        ("empty_llvar_and_lllvar", {"t": "0200", "2": "", "11": "000001", "48": ""}),
        ("advice_0220_max_lengths", {
            "t": "0220", "2": "1" * 19, "32": "2" * 11, "44": "4" * 25, "45": "5" * 76,
            "46": "6" * 999, "104": "7" * 100}),
    ]


def all_fields_case(rng, spec):
    """Every field 2..128 but 65 (pyiso8583 reads bit 65 as a tertiary bitmap)."""
    doc = {"t": "0200"}
    for n in range(2, 129):
        if n != 65:
            doc[str(n)] = random_value(rng, spec, str(n))
    return ("every_field_but_65", doc)


def random_cases(rng, spec, count):
    out = []
    for i in range(count):
        doc = {"t": rng.choice(["0100", "0110", "0200", "0210", "0400", "0420", "0800", "0810"])}
        for n in rng.sample([n for n in range(2, 129) if n != 65], rng.randint(1, 20)):
            doc[str(n)] = random_value(rng, spec, str(n))
        out.append(("random_%d" % i, doc))
    return out


def cases():
    for name, spec in SPECS.items():
        rng = random.Random(8583)
        docs = named_cases(spec) + [all_fields_case(rng, spec)] + random_cases(rng, spec, 40)
        for case, doc in docs:
            wire, _ = iso8583.encode(dict(doc), spec)
            decoded, _ = iso8583.decode(bytes(wire), spec)
            print("CASE %s %s %s %s" % (name, case, bytes(wire).hex(), line_of(spec, decoded)))


def decode():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        name, wire = line.split()
        spec = SPECS[name]
        try:
            doc, _ = iso8583.decode(bytes.fromhex(wire), spec)
            again, _ = iso8583.encode(dict(doc), spec)
        except (iso8583.DecodeError, iso8583.EncodeError) as e:
            print("ERROR %s" % e, flush=True)
            continue
        print("DECODED %s %s" % (bytes(again).hex(), line_of(spec, doc)), flush=True)


if __name__ == "__main__":
    {"cases": cases, "decode": decode}[sys.argv[1]]()
