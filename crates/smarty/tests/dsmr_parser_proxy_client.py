#!/usr/bin/env python3
"""Reads telegrams from `smarty`'s plain-telegram proxy with dsmr_parser's own TCP reader.

Used by the proxy's tests (crates/smarty/src/service/proxy.rs): the reader is the one Home
Assistant's DSMR integration uses, `dsmr_parser.clients.protocol.create_tcp_dsmr_reader`, with
DSMR version "5L" (the LUXEMBOURG_SMARTY specification, a plain DSMR 5 telegram).

    python3 dsmr_parser_proxy_client.py HOST PORT COUNT [VERSION] [TIMEOUT_S]

Prints one JSON array on stdout: per telegram an object OBIS code -> {"value": str, "unit": str
or null}. dsmr_parser keys objects by line patterns (`^\\d-\\d:1\\.8\\.0.+?\\r\\n`); the code is
rebuilt from the pattern and the object's A-B groups; a pattern with a choice in its last group
(`24\\.2\\.[13]`) is listed under every choice. Exits 2 when fewer than COUNT telegrams arrive
in time.
"""

import asyncio
import json
import re
import sys

from dsmr_parser.clients.protocol import create_tcp_dsmr_reader


def obis_codes(pattern, obis_id_code):
    """The OBIS codes a dsmr_parser line pattern stands for, with the object's A-B groups."""
    body = pattern.lstrip("^")
    body = body.split(".+?", 1)[0]
    cde = body.split(":", 1)[1] if ":" in body else body
    cde = cde.replace("\\.", ".")
    a, b = obis_id_code
    choices = [""]
    for part in re.findall(r"\[[^\]]*\]|[^\[]+", cde):
        if part.startswith("["):
            options = list(part[1:-1])
            choices = [c + o for c in choices for o in options]
        else:
            choices = [c + part for c in choices]
    return [f"{a}-{b}:{c}" for c in choices]


def as_text(value):
    return None if value is None else str(value)


def flatten(telegram):
    out = {}
    for pattern, obj in telegram.items():
        code = getattr(obj, "obis_id_code", None)
        if code is None or not hasattr(obj, "value"):
            continue
        for obis in obis_codes(pattern, code):
            out[obis] = {"value": as_text(obj.value), "unit": getattr(obj, "unit", None)}
    return out


async def main(host, port, count, version, timeout):
    loop = asyncio.get_running_loop()
    telegrams = []
    done = asyncio.Event()

    def on_telegram(telegram):
        telegrams.append(flatten(telegram))
        if len(telegrams) >= count:
            done.set()

    transport, _protocol = await create_tcp_dsmr_reader(
        host, port, version, on_telegram, loop=loop
    )
    # Tell the caller the connection is up (it waits for the client before sending).
    print("connected", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        print(f"only {len(telegrams)} of {count} telegrams in {timeout} s", file=sys.stderr)
        return 2
    finally:
        transport.close()
    json.dump(telegrams[:count], sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    version = sys.argv[4] if len(sys.argv) > 4 else "5L"
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
    sys.exit(asyncio.run(main(host, port, count, version, timeout)))
