"""The secret box: what it seals opens only with its key, for the place it was sealed for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.signers import new_secret_box
from trailkeep.server.secrets import SecretBox, SecretKeyError, is_sealed


def test_a_sealed_secret_opens_only_where_and_with_what_sealed_it() -> None:
    box = new_secret_box()
    sealed = box.seal("s3cret-value", "apps/app_a/session_secret")
    assert is_sealed(sealed)
    assert "s3cret" not in sealed
    assert box.open(sealed, "apps/app_a/session_secret") == "s3cret-value"
    assert box.seal("s3cret-value", "apps/app_a/session_secret") != sealed  # a fresh nonce
    with pytest.raises(SecretKeyError, match="altered"):
        box.open(sealed, "apps/app_b/session_secret")  # moved to another app's row
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretKeyError, match="altered"):
        box.open(tampered, "apps/app_a/session_secret")
    other = new_secret_box()
    with pytest.raises(SecretKeyError, match=f"sealed under secret key {box.key_id}"):
        other.open(sealed, "apps/app_a/session_secret")
    with pytest.raises(SecretKeyError, match="not sealed"):
        box.open("a-secret-in-clear", "apps/app_a/session_secret")


def test_the_key_file_is_made_once_private_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret.key"
    first = SecretBox.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = SecretBox.load(path)
    assert again.key_id == first.key_id
    assert again.open(first.seal("x", "c"), "c") == "x"


def test_a_key_file_found_too_open_is_tightened_and_a_bad_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    SecretBox.load(path)
    os.chmod(path, 0o644)
    SecretBox.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="does not hold a secret key"):
        SecretBox.load(path)


def test_a_key_made_in_a_sticky_shared_directory_leaves_it_open(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is: everyone's, sticky
    SecretBox.load(shared / "secret.key")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "secret.key").stat().st_mode) == 0o600
