"""CRC-32C: the check values the standards publish."""

from __future__ import annotations

from filodb.encoding.crc32c import crc32c


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
