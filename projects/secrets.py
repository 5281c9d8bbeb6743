"""Key material: API key generation and hashing, and encryption of the project's HMAC key."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

API_KEY_PREFIX = "ts"


def _fernet() -> Fernet:
    # A key derived from SECRET_KEY: rotating SECRET_KEY makes stored HMAC keys unreadable, which is
    # the behaviour one wants from a leaked secret (admins then regenerate the HMAC key).
    digest = hashlib.sha256(b"tiny-studio-hmac-key-encryption:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed since the value was stored
        raise ValueError("stored secret cannot be decrypted with the current SECRET_KEY") from exc


def new_hmac_key() -> str:
    return secrets.token_hex(16)


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, public prefix, sha256 of the full key)."""
    prefix = secrets.token_hex(5)
    secret = secrets.token_urlsafe(24)
    key = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_api_key(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
