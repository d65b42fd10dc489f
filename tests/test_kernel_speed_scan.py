"""The compiled reader's one-pass scan of counts strings (``_cscan.c``: ``special_byte`` looks for a
quote, a backslash or a byte outside printable ASCII 16 bytes at a time): every position of such a
byte within and across 16-byte blocks, escapes right before the closing quote, and the strings it
must give up on. An accepted file gives json's counts strings; anything else gives None."""

from __future__ import annotations

import json

import pytest

from entitykit.evaluation import _scan


def _results(counts_json: str) -> bytes:
    """One COCO result whose counts is the JSON string literal ``counts_json`` (quotes included)."""
    return ('[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": ' + counts_json +
            '}, "score": 0.5}]').encode()


def _scanned_counts(text: bytes):
    cols = _scan.coco_results(bytearray(text))
    if cols is None:
        return None
    return bytes(cols.buf[cols.start[0]:cols.end[0]]).decode("ascii")


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 47, 100])
@pytest.mark.parametrize("at", [None, 0, 7, 15, 16, 17])
def test_escapes_anywhere(length, at):
    """Counts of every length around the 16-byte blocks, with an escaped backslash or slash at
    several positions (or none): the scanner's string is json's."""
    body = "".join(chr(48 + (k * 7) % 64) for k in range(length)).replace("\\", "a")
    for esc in ("\\\\", "\\/"):
        lit = body if at is None or at > length else body[:at] + esc + body[at:]
        text = _results('"' + lit + '"')
        assert _scanned_counts(text) == json.loads(text)[0]["segmentation"]["counts"]


@pytest.mark.parametrize("pos", [0, 5, 15, 16, 17, 30, 40])
@pytest.mark.parametrize("bad", ["\\n", "\\u0041", "\\\"", "\x7f", "é", "\x01"])
def test_gives_up_on_other_bytes_and_escapes(pos, bad):
    """An escape other than \\\\ and \\/, a control character, DEL or a non-ASCII character at
    any position of a 41-byte counts string: the compiled reader gives up (json then decides)."""
    body = "0" * 41
    lit = body[:pos] + bad + body[pos:]
    assert _scanned_counts(_results('"' + lit + '"')) is None


def test_backslash_pair_before_the_quote_and_unterminated():
    assert _scanned_counts(_results('"' + "1" * 20 + '\\\\"')) == "1" * 20 + "\\"
    assert _scanned_counts(_results('"' + "1" * 20 + '\\/"')) == "1" * 20 + "/"
    assert _scanned_counts(b'[{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "0123456789012345678') is None
