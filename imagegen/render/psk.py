"""WPA pre-shared keys, derived exactly as wpa_passphrase(8) derives them."""

from __future__ import annotations

import hashlib


def wpa_psk(ssid: str, passphrase: str) -> str:
    """PBKDF2-HMAC-SHA1 of the passphrase, salted with the SSID's bytes, 4096 rounds, 32 bytes (IEEE 802.11i H.4)."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()
