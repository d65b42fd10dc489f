"""``_ahead.read_bytes`` reads into a bytearray that is not zeroed first (``_cscan.buffer``): what it
returns must still be exactly the file's bytes, whatever the allocator left in the memory before."""

from __future__ import annotations

import numpy as np
import pytest

from entitykit.evaluation import _ahead, _cscan


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 7])
def test_read_bytes_is_the_file(tmp_path, size):
    rng = np.random.default_rng(size)
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    # dirty the allocator first: freed memory full of 0xAB is what a new buffer may get back
    junk = bytearray(b"\xab" * (size + 64))
    del junk
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    raw = _ahead.read_bytes(p)
    assert type(raw) is bytearray and bytes(raw) == data


def test_buffer_sizes():
    assert len(_cscan.buffer(0)) == 0 and type(_cscan.buffer(5)) is bytearray and len(_cscan.buffer(5)) == 5
    with pytest.raises(ValueError):
        _cscan.buffer(-1)
    with pytest.raises(TypeError):
        _cscan.buffer("5")
