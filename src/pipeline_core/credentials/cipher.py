"""``Cipher``: secrets at rest, encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package) under a key from ``PIPELINE_CORE_SECRET_KEY`` or the file
``PIPELINE_CORE_SECRET_KEY_FILE`` names. Several keys (comma-separated) are tried in turn to
open a value, and the first one seals new values: a key rotates by putting the new one first,
then re-sealing what is stored (``pipeline-core secrets rotate-key``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pipeline_core.errors import ConfigurationError

KEY_ENV = "PIPELINE_CORE_SECRET_KEY"
KEY_FILE_ENV = "PIPELINE_CORE_SECRET_KEY_FILE"


class Cipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError("no secret key given")
        self._keys = [k.strip() for k in keys]
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in self._keys])
        except ValueError:
            raise ConfigurationError(
                f"{KEY_ENV} is not a key: make one with pipeline-core secrets new-key "
                "(32 url-safe base64-encoded bytes)"
            ) from None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Cipher | None:
        """The cipher the environment names, or ``None`` when it names no key;
        ``ConfigurationError`` when the key or its file is wrong."""
        text = environ.get(KEY_ENV)
        path = environ.get(KEY_FILE_ENV)
        if not text and path:
            try:
                text = Path(path).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"cannot read the secret key file {path}: {exc}") from None
        if not text:
            return None
        return cls([k for k in text.split(",") if k.strip()])

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def then(self, *older: Cipher) -> Cipher:
        """This cipher's keys first, then ``older`` ones': new values sealed with the first,
        values sealed with any of them opened (for a rotation)."""
        return Cipher([*self._keys, *(k for c in older for k in c._keys)])

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        """``ConfigurationError`` when no key given opens it."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                f"the secret key ({KEY_ENV}) does not open the stored secrets: it is not the "
                "key they were sealed with"
            ) from None

    def reseal(self, sealed: str) -> str:
        """Sealed again under the first key (after ``open`` checked it)."""
        return self._fernet.rotate(sealed.encode()).decode()
