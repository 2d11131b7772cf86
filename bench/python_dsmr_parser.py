#!/usr/bin/env python3
"""Throughput baseline: Python ``dsmr_parser`` decoding encrypted Smarty frames.

This is the Python side of the decoder throughput comparison with the Rust
``smarty-p1`` crate. It measures how fast the ``dsmr_parser`` library turns a
byte stream of Luxembourg "Smarty" encrypted DLMS frames into parsed telegrams,
doing the same work as our Rust decoder:

1. framing        -- ``dsmr_parser.clients.telegram_buffer.EncryptedTelegramBuffer``
                     splits the raw byte stream into 0xDB general-global-cipher
                     frames (fed ``--chunk`` bytes at a time, like a socket or
                     serial reader would);
2. decryption     -- ``TelegramParser.parse`` with ``telegram_specifications.MSN``
                     decrypts AES-128-GCM *and verifies the 12-byte tag*
                     (via ``dlms_cosem``; AAD = 0x30 || authentication key). We
                     pass the authentication key explicitly: passing ``None``
                     would make the library skip the tag check;
3. CRC            -- CRC-16 check of the plaintext telegram (on by default);
4. full parse     -- every object of the MSN specification, with
                     ``throw_ex=True`` so a line that fails to parse raises
                     instead of being logged and skipped.

The stream is N copies of one frame, built in memory before timing starts (the
frame counter repeats; the library has no replay check). Each run is timed
end to end (feeding + framing + decrypt + CRC + parse); the best of
``--repeat`` runs is reported as one JSON line on stdout.

Correctness is asserted on every run: exactly N telegrams must come out, and
for every telegram a few values (1-0:1.8.0, 1-0:2.8.0, 0-0:42.0.0) must equal
those read from a reference plaintext. The reference plaintext is obtained
independently of dsmr_parser (AES-GCM with the ``cryptography`` package) and,
when the frame's sibling .json names an ``expected_plaintext_file`` in the
test data, compared byte for byte with that file (a missing file is an error).

``--self-test`` runs a short stream (50 frames, one run) plus negative checks
(flipped tag bit must be rejected, a re-encrypted telegram with a bad CRC must
be rejected, odd chunk sizes must frame correctly) and exits non-zero on any
mismatch.

Example::

    python3 bench/python_dsmr_parser.py \\
        --frame crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from decimal import Decimal
from importlib.metadata import version as package_version
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from dsmr_parser import telegram_specifications
from dsmr_parser.clients.telegram_buffer import EncryptedTelegramBuffer
from dsmr_parser.exceptions import DecryptionError, InvalidChecksumError
from dsmr_parser.parsers import TelegramParser

# Fixed, public Smarty authentication key (Luxmetering P1 spec v1.1.3 §3.2.5).
# AAD = security control byte 0x30 || this key.
SMARTY_AUTH_KEY = "00112233445566778899AABBCCDDEEFF"

SELF_TEST_COUNT = 50

# OBIS lines spot-checked on every parsed telegram: (regex on the plaintext,
# dsmr_parser attribute name, converter for the expected value).
SPOT_CHECKS = (
    (r"^1-0:1\.8\.0\(([0-9.]+)\*kWh\)", "ELECTRICITY_IMPORTED_TOTAL", Decimal),
    (r"^1-0:2\.8\.0\(([0-9.]+)\*kWh\)", "ELECTRICITY_EXPORTED_TOTAL", Decimal),
    # dsmr_parser turns an empty "()" into None.
    (r"^0-0:42\.0\.0\(([0-9A-Fa-f]*)\)", "LUXEMBOURG_EQUIPMENT_IDENTIFIER",
     lambda v: v or None),
)


class BenchError(Exception):
    """A decoded result did not match the reference."""


# --------------------------------------------------------------------------
# Frame and reference plaintext
# --------------------------------------------------------------------------

def load_frame(path: Path) -> bytes:
    """Read a frame stored as hex text (whitespace ignored)."""
    frame = bytes.fromhex("".join(path.read_text().split()))
    if not frame or frame[0] != 0xDB:
        raise BenchError(f"{path}: not a general-global-cipher frame (0xDB)")
    return frame


def load_sidecar(frame_path: Path) -> dict:
    """Return the sibling .json metadata, or {} when there is none."""
    sidecar = frame_path.with_suffix(".json")
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    return {}


def split_frame(frame: bytes) -> tuple[bytes, bytes, int, bytes, bytes]:
    """Split a Smarty frame into (system title, SC, FC, ciphertext, tag).

    Independent of dsmr_parser: only used to build the reference plaintext
    and the negative self-test frames.
    """
    title_len = frame[1]
    title = frame[2:2 + title_len]
    pos = 2 + title_len
    if frame[pos] != 0x82:
        raise BenchError("only the 0x82 long-form length is handled here")
    length = int.from_bytes(frame[pos + 1:pos + 3], "big")
    body = frame[pos + 3:pos + 3 + length]
    if len(body) != length:
        raise BenchError("frame shorter than its length field")
    security = body[:1]
    counter = int.from_bytes(body[1:5], "big")
    return title, security, counter, body[5:-12], body[-12:]


def reference_plaintext(frame: bytes, key: bytes, auth_key: bytes) -> bytes:
    """Decrypt and tag-verify the frame with ``cryptography`` (not dsmr_parser)."""
    title, security, counter, ciphertext, tag = split_frame(frame)
    iv = title + counter.to_bytes(4, "big")
    aad = security + auth_key
    # The AESGCM helper only takes 16-byte tags; the Cipher API allows 12.
    dec = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=12)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(ciphertext) + dec.finalize()
    except InvalidTag:
        raise BenchError("GCM tag does not verify: wrong --key or --auth-key?") from None


def encrypt_frame(template: bytes, key: bytes, auth_key: bytes,
                  plaintext: bytes) -> bytes:
    """Build a frame like ``template`` around a new plaintext (self-test only)."""
    title, security, counter, _, _ = split_frame(template)
    iv = title + counter.to_bytes(4, "big")
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(security + auth_key)
    ciphertext = enc.update(plaintext) + enc.finalize()
    body = security + counter.to_bytes(4, "big") + ciphertext + enc.tag[:12]
    return (bytes([0xDB, len(title)]) + title + b"\x82"
            + len(body).to_bytes(2, "big") + body)


def expected_values(plaintext: bytes) -> dict[str, object]:
    """Values the spot checks expect, read straight from the plaintext."""
    text = plaintext.decode("ascii")
    expected = {}
    for pattern, attr, convert in SPOT_CHECKS:
        m = re.search(pattern, text, re.MULTILINE)
        if m:
            expected[attr] = convert(m.group(1))
    if "ELECTRICITY_IMPORTED_TOTAL" not in expected:
        raise BenchError("reference plaintext has no 1-0:1.8.0 line")
    return expected


# --------------------------------------------------------------------------
# The measured work
# --------------------------------------------------------------------------

def decode_stream(stream: bytes, chunk: int, parser: TelegramParser,
                  key_hex: str, auth_key_hex: str, expected: dict) -> int:
    """Feed ``stream`` through EncryptedTelegramBuffer and parse every frame.

    This is exactly what dsmr_parser's own socket/serial/asyncio clients do
    per received chunk: ``append`` then drain ``get_all()`` into ``parse``.
    Each telegram is spot-checked against ``expected`` (a few attribute
    look-ups, negligible next to parsing) and then dropped, like a gateway
    that forwards and forgets, so memory use stays flat whatever N is.

    :return: number of telegrams decoded
    """
    buffer = EncryptedTelegramBuffer()
    parse = parser.parse
    checks = tuple(expected.items())
    decoded = 0
    for offset in range(0, len(stream), chunk):
        buffer.append(stream[offset:offset + chunk])
        for frame_hex in buffer.get_all():
            telegram = parse(frame_hex, key_hex, auth_key_hex, throw_ex=True)
            for attr, want in checks:
                got = getattr(telegram, attr).value
                if got != want:
                    raise BenchError(
                        f"telegram {decoded}: {attr} = {got!r}, expected {want!r}")
            decoded += 1
    return decoded


def check_count(decoded: int, count: int) -> None:
    """Every frame of the stream must have come out."""
    if decoded != count:
        raise BenchError(f"decoded {decoded} telegrams, expected {count}")


def run_benchmark(frame: bytes, key_hex: str, auth_key_hex: str, count: int,
                  repeat: int, chunk: int, expected: dict) -> float:
    """Best thread CPU time (seconds) over ``repeat`` full decodes of the stream (the time
    the thread ran, as the Rust benchmark measures it; not the time it waited for a core)."""
    stream = frame * count
    parser = TelegramParser(telegram_specifications.MSN,
                            apply_checksum_validation=True)
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        decoded = decode_stream(stream, chunk, parser, key_hex, auth_key_hex,
                                expected)
        elapsed = time.thread_time() - start
        check_count(decoded, count)
        best = min(best, elapsed)
    return best


# --------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------

def expect_rejected(frame: bytes, key_hex: str, auth_key_hex: str,
                    error: type, what: str) -> None:
    parser = TelegramParser(telegram_specifications.MSN)
    try:
        decode_stream(frame, 4096, parser, key_hex, auth_key_hex, {})
    except error:
        return
    raise BenchError(f"self-test: {what} was not rejected with {error.__name__}")


def self_test(frame: bytes, key: bytes, auth_key: bytes, plaintext: bytes,
              expected: dict) -> None:
    """Negative and framing checks on top of the short benchmark run."""
    key_hex, auth_hex = key.hex(), auth_key.hex()

    # 1. The GCM tag is verified: flip one bit of the last tag byte.
    tampered = bytearray(frame)
    tampered[-1] ^= 0x01
    expect_rejected(bytes(tampered), key_hex, auth_hex, DecryptionError,
                    "frame with a flipped tag bit")

    # 2. The AAD matters: a wrong authentication key must fail the tag.
    expect_rejected(frame, key_hex, "FF" * 16, DecryptionError,
                    "frame checked with a wrong authentication key")

    # 3. The CRC is checked: re-encrypt the plaintext with a wrong CRC.
    text = plaintext.decode("ascii")
    bang = text.rindex("!")
    crc = text[bang + 1:bang + 5]
    bad_crc = "0000" if crc != "0000" else "FFFF"
    bad_plain = (text[:bang + 1] + bad_crc + text[bang + 5:]).encode("ascii")
    expect_rejected(encrypt_frame(frame, key, auth_key, bad_plain), key_hex,
                    auth_hex, InvalidChecksumError, "telegram with a bad CRC")

    # 4. Framing across awkward chunk boundaries, with leading garbage.
    parser = TelegramParser(telegram_specifications.MSN)
    for chunk in (1, 7, len(frame) - 1, len(frame) + 1):
        stream = b"\x00\x7e" + frame * 3
        check_count(decode_stream(stream, chunk, parser, key_hex, auth_hex,
                                  expected), 3)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure Python dsmr_parser throughput on a stream of "
                    "encrypted Luxembourg Smarty frames (framing + AES-GCM "
                    "tag check + CRC + full MSN parse). Prints one JSON line.")
    p.add_argument("--frame", required=True, type=Path,
                   help="frame as hex text (e.g. crates/smarty-p1/tests/data/"
                        "encrypted/NAME.hex); the "
                        "key is read from the sibling NAME.json unless --key is given")
    p.add_argument("--key", help="32 hex digit AES-128 encryption key "
                                 "(default: \"key\" field of the sibling .json)")
    p.add_argument("--auth-key", default=SMARTY_AUTH_KEY,
                   help="32 hex digit authentication key used in the AAD "
                        "(default: the fixed Smarty key %(default)s)")
    p.add_argument("--count", type=int, default=2000,
                   help="number of frames in the stream (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5,
                   help="timed runs; the best one is reported (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=4096,
                   help="bytes fed to the buffer per append (default: %(default)s)")
    p.add_argument("--self-test", action="store_true",
                   help=f"quick correctness run ({SELF_TEST_COUNT} frames, 1 run, "
                        "plus tag/CRC/framing negative checks); exit 1 on any mismatch")
    args = p.parse_args(argv)
    if args.count < 1 or args.repeat < 1 or args.chunk < 1:
        p.error("--count, --repeat and --chunk must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        frame = load_frame(args.frame)
        meta = load_sidecar(args.frame)
        key_hex = args.key or meta.get("key")
        if not key_hex:
            raise BenchError("no --key given and no \"key\" in the sibling .json")
        key, auth_key = bytes.fromhex(key_hex), bytes.fromhex(args.auth_key)

        plaintext = reference_plaintext(frame, key, auth_key)
        expected_file = meta.get("expected_plaintext_file")
        if expected_file:
            # NAME.json lives in <data>/encrypted/; paths are relative to <data>.
            path = args.frame.resolve().parent.parent / expected_file
            if not path.is_file():
                raise BenchError(f"{args.frame.with_suffix('.json')} names "
                                 f"{expected_file}, which is missing")
            if path.read_bytes() != plaintext:
                raise BenchError(f"decrypted frame differs from {path}")
        expected = expected_values(plaintext)

        count, repeat = args.count, args.repeat
        if args.self_test:
            count, repeat = SELF_TEST_COUNT, 1
            self_test(frame, key, auth_key, plaintext, expected)

        best = run_benchmark(frame, key.hex(), auth_key.hex(), count, repeat,
                             args.chunk, expected)
    except (BenchError, DecryptionError, InvalidChecksumError, ValueError) as err:
        print(f"FAIL: {type(err).__name__}: {err}", file=sys.stderr)
        return 1

    result = {
        "impl": f"python dsmr_parser {package_version('dsmr-parser')}",
        "python": platform.python_version(),
        "frame_bytes": len(frame),
        "frames": count,
        "best_seconds": round(best, 6),
        "frames_per_second": round(count / best, 1),
        "mib_per_second": round(count * len(frame) / best / (1024 * 1024), 4),
    }
    if args.self_test:
        result["self_test"] = "ok"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
