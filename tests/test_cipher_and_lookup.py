"""The secret key from the environment or a file (and what is wrong with either), the
environment overrides of variables and connections, and an executor's set of secrets to
mask: refreshed from the store, and grown by what a try looks up."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_core.credentials.cipher import KEY_ENV, KEY_FILE_ENV, Cipher
from pipeline_core.credentials.connections import ConnectionError_
from pipeline_core.credentials.lookup import CredentialMissing, Overrides, env_name
from pipeline_core.engine.tasks.secrets import Credentials, TrySecrets
from pipeline_core.errors import ConfigurationError
from pipeline_core.store import open_store


def test_the_key_comes_from_the_environment_or_a_readable_file(tmp_path: Path) -> None:
    key = Cipher.new_key()
    sealed = Cipher.from_environ({KEY_ENV: key}).seal("x")  # type: ignore[union-attr]
    file = tmp_path / "key"
    file.write_text(key)
    assert Cipher.from_environ({KEY_FILE_ENV: str(file)}).open(sealed) == "x"  # type: ignore[union-attr]
    assert Cipher.from_environ({}) is None
    with pytest.raises(ConfigurationError, match="cannot read the secret key file"):
        Cipher.from_environ({KEY_FILE_ENV: str(tmp_path / "missing")})
    file.write_bytes("clé".encode())
    with pytest.raises(ConfigurationError, match="cannot read the secret key file"):
        Cipher.from_environ({KEY_FILE_ENV: str(file)})
    with pytest.raises(ConfigurationError, match="32 url-safe base64-encoded bytes"):
        Cipher.from_environ({KEY_ENV: "not-a-key"})


def test_environment_overrides_read_json_or_text_and_name_a_bad_uri() -> None:
    overrides = Overrides({
        "PIPELINE_CORE_VAR_API_BASE": "https://x",
        "PIPELINE_CORE_VAR_COUNT": "5",
        "PIPELINE_CORE_VAR_db_password": '{"primary": "pw-one-1", "n": 1234}',
        "PIPELINE_CORE_CONN_DB": "postgresql://u:p%40ss-word@h:5432/d",
        "PIPELINE_CORE_CONN_BROKEN": "no scheme here",
    })  # fmt: skip
    assert env_name("PIPELINE_CORE_VAR_", "api.base-url") == "PIPELINE_CORE_VAR_API_BASE_URL"
    assert overrides.variable("api.base") == (True, "https://x")
    assert overrides.variable("count") == (True, 5)
    assert overrides.variable("missing") == (False, None)
    assert overrides.connection("db").password == "p@ss-word"  # type: ignore[union-attr]
    with pytest.raises(ConnectionError_, match="PIPELINE_CORE_CONN_BROKEN"):
        overrides.connection("broken")
    assert set(overrides.secrets()) == {"pw-one-1", "1234", "p@ss-word", "no scheme here"}


def test_an_executors_secrets_refresh_and_a_try_learns_what_it_reads(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.credentials.cipher = Cipher([Cipher.new_key()])
    store.credentials.set_variable("api_token", "first-secret")
    now = [0.0]
    credentials = Credentials(store.credentials, {}, refresh=1.0, monotonic=lambda: now[0])
    assert credentials.masker().mask("first-secret!") == "***!"
    store.credentials.set_variable("other_token", "second-secret")
    assert credentials.masker().mask("second-secret") == "second-secret"  # not yet read
    reader = TrySecrets(credentials)
    assert reader.variable("other_token") == "second-secret"
    assert reader.mask("second-secret and first-secret") == "*** and ***"
    now[0] = 1.5
    assert credentials.masker().mask("second-secret") == "***"
    with pytest.raises(CredentialMissing, match="PIPELINE_CORE_VAR_NOPE"):
        reader.variable("nope")
    assert reader.lookup("connection", "nope")[1] is not None
    store.close()
