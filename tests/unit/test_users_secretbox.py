"""Server secrets: generated once into 0600 files and reused, or taken from MT_*; SecretBox round trips."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from libs import config
from libs.config import ConfigError, Settings
from libs.users import secretbox
from libs.users.secretbox import SecretBox, SecretBoxError, admin_token, jwt_secret, read_or_create, secret_box


def _settings(home: Path, **over: object) -> Settings:
    return config.load({}, home=home, **over)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_generated_once_with_0600(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = _settings(home)
    key, token, box = jwt_secret(s), admin_token(s), secret_box(s)
    assert box is not None and token is not None
    for name in ("jwt.secret", "admin.token", "secrets.key"):
        assert _mode(home / name) == 0o600, name
    assert _mode(home) == 0o700
    assert (home / "jwt.secret").read_text().strip().encode() == key and len(key) >= 32
    assert (home / "admin.token").read_text().strip() == token
    Fernet((home / "secrets.key").read_text().strip().encode())  # a valid Fernet key
    # a restart reads the same values back
    assert jwt_secret(_settings(home)) == key and admin_token(_settings(home)) == token
    assert box.open(secret_box(_settings(home)).seal({"a": 1})) == {"a": 1}  # type: ignore[union-attr]


def test_variables_win_over_files_and_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fkey = Fernet.generate_key().decode()
    s = _settings(home, jwt_secret="j" * 40, admin_token="a" * 20, secrets_key=fkey)
    assert jwt_secret(s) == b"j" * 40 and admin_token(s) == "a" * 20
    sealed = secret_box(s).seal({"x": "y"})  # type: ignore[union-attr]
    assert Fernet(fkey.encode()).decrypt(sealed.encode()) == b'{"x":"y"}'
    assert not home.exists()


def test_without_create_a_missing_file_is_none(tmp_path: Path) -> None:
    s = _settings(tmp_path / "home")
    assert admin_token(s, create=False) is None and secret_box(s, create=False) is None
    assert not (tmp_path / "home").exists()


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.token").write_text("t" * 30 + "\n")
    (home / "admin.token").chmod(0o644)
    assert admin_token(_settings(home)) == "t" * 30
    assert _mode(home / "admin.token") == 0o600


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"jwt_secret": "short"}, "MT_JWT_SECRET is 5 bytes; an HS256 key needs at least 32"),
        ({"admin_token": "tiny"}, "MT_ADMIN_TOKEN is 4 characters"),
        ({"secrets_key": "not-a-fernet-key"}, "MT_SECRETS_KEY: key #1 is not a Fernet key"),
    ],
)
def test_bad_variables_are_named_without_their_value(tmp_path: Path, over: dict[str, str], message: str) -> None:
    s = _settings(tmp_path, **over)
    with pytest.raises(ConfigError) as err:
        {"jwt_secret": jwt_secret, "admin_token": admin_token, "secrets_key": secret_box}[next(iter(over))](s)
    assert message in str(err.value)
    assert next(iter(over.values())) not in str(err.value)


def test_empty_file_is_an_error_not_a_silent_new_key(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty: delete it"):
        secret_box(_settings(tmp_path))


def test_concurrent_creators_agree_on_one_value(tmp_path: Path) -> None:
    path = tmp_path / "shared.secret"
    results: list[str] = []
    counter = iter(range(1000))
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(read_or_create(path, lambda: f"value-{next(counter)}", "a test secret"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and path.read_text().strip() == results[0]
    assert [p.name for p in tmp_path.iterdir()] == ["shared.secret"]  # no temporary files left


def test_seal_open_round_trip_and_ciphertext_hides_the_plaintext() -> None:
    box = SecretBox([Fernet.generate_key()])
    secret = "0x" + "ab" * 32
    fields = {"private_key": secret, "funder": "0x" + "1" * 40, "use_demo": True}
    sealed = box.seal(fields)
    assert box.open(sealed) == fields
    for text in (secret, "ab" * 32, "abababab", "private_key", "funder"):
        assert text not in sealed
    assert box.seal(fields) != sealed  # a fresh IV every time


def test_other_key_or_tampering_fails_without_plaintext() -> None:
    box = SecretBox([Fernet.generate_key()])
    sealed = box.seal({"api_key": "kalshi-key-123"})
    with pytest.raises(SecretBoxError, match="not the one these secrets were stored with") as err:
        SecretBox([Fernet.generate_key()]).open(sealed)
    assert "kalshi-key-123" not in str(err.value)
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    with pytest.raises(SecretBoxError):
        box.open(flipped)


def test_key_rotation_with_a_key_list(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_old = secret_box(_settings(tmp_path, secrets_key=old)).seal({"k": "v"})  # type: ignore[union-attr]
    rotated = secret_box(_settings(tmp_path, secrets_key=f"{new},{old}"))
    assert rotated is not None and rotated.open(sealed_old) == {"k": "v"}
    sealed_new = rotated.seal({"k": "w"})
    assert SecretBox([new.encode()]).open(sealed_new) == {"k": "w"}  # the first key encrypts
    with pytest.raises(SecretBoxError):
        SecretBox([old.encode()]).open(sealed_new)


def test_same_secret_compares_exactly() -> None:
    assert secretbox.same_secret("abc", "abc") and not secretbox.same_secret("abc", "abd")
    assert not secretbox.same_secret("abc", "abcd")
