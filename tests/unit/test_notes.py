"""Tests for trailkeep.log.notes: C2SP checkpoints and signed notes, as Go's sumdb/note has them."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.signers import new_signer
from trailkeep.log.merkle import EMPTY_ROOT, hash_children, hash_leaf
from trailkeep.log.notes import Checkpoint, NoteError, NoteSigner, NoteVerifier, open_checkpoint

FAST = settings(deadline=None, max_examples=150)


def _flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= mask
    return bytes(out)


GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ROOT = hash_children(hash_leaf(b"left"), hash_leaf(b"right"))


def test_go_sumdb_note_known_answer() -> None:
    signer = NoteSigner.from_signer_key(GO_SIGNER_KEY)
    assert (signer.name, signer.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert signer.signer_key() == GO_SIGNER_KEY
    assert signer.verifier_key() == GO_VERIFIER_KEY
    assert signer.sign(GO_TEXT) == GO_NOTE
    verifier = NoteVerifier.from_verifier_key(GO_VERIFIER_KEY)
    assert (verifier.name, verifier.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert verifier.verifier_key() == GO_VERIFIER_KEY
    assert verifier.verify(GO_NOTE) == GO_TEXT


def test_sign_verify_round_trip() -> None:
    signer = new_signer("example.com/log")
    again = NoteSigner.from_signer_key(signer.signer_key())
    assert again.verifier_key() == signer.verifier_key()
    verifier = NoteVerifier.from_verifier_key(signer.verifier_key())
    assert verifier.key_id == signer.key_id
    for text in ("a\n", "ünïcödé — ok\n", "line\n\nafter a blank line\n", "\n"):
        assert verifier.verify(signer.sign(text)) == text
        assert verifier.verify(again.sign(text)) == text


def test_every_flipped_byte_of_a_note_is_refused() -> None:
    verifier = NoteVerifier.from_verifier_key(GO_VERIFIER_KEY)
    raw = GO_NOTE.encode("utf-8")
    for position in range(len(raw)):
        for mask in (0x01, 0x20, 0x80):
            note = _flip(raw, position, mask).decode("utf-8", errors="surrogateescape")
            with pytest.raises(NoteError):
                verifier.verify(note)


def test_other_keys_signatures_are_ignored() -> None:
    a, b = new_signer("a.example/log"), new_signer("b.example/witness")
    text = "a.example/log\n5\n" + base64.b64encode(ROOT).decode() + "\n"
    both = a.sign(text) + b.sign(text)[len(text) + 1 :]
    assert NoteVerifier.from_verifier_key(a.verifier_key()).verify(both) == text
    assert NoteVerifier.from_verifier_key(b.verifier_key()).verify(both) == text
    stranger = NoteVerifier.from_verifier_key(new_signer("c").verifier_key())
    with pytest.raises(NoteError, match="no signature"):
        stranger.verify(both)


def test_a_shared_name_or_a_shared_key_id_alone_is_another_key() -> None:
    signer = new_signer("log.example")
    impostor = new_signer("log.example")
    verifier = signer.verifier()
    with pytest.raises(NoteError, match="no signature"):
        verifier.verify(impostor.sign("hello\n"))
    renamed = signer.sign("hello\n").replace("— log.example ", "— other.example ")
    with pytest.raises(NoteError, match="no signature"):
        verifier.verify(renamed)


def test_a_bad_signature_by_the_key_is_refused_even_next_to_a_good_one() -> None:
    signer = new_signer("log.example")
    good = signer.sign("hello\n")
    sig_line = signer.sign("other\n").split("\n\n")[1]
    with pytest.raises(NoteError, match="bad signature"):
        signer.verifier().verify(good + sig_line)
    blob = base64.b64decode(good.split(" ")[-1])
    for short in (blob[:67], blob + b"\x00"):
        forged = f"hello\n\n— log.example {base64.b64encode(short).decode()}\n"
        with pytest.raises(NoteError, match="bad signature"):
            signer.verifier().verify(forged)


@pytest.mark.parametrize("text", ["", "no newline", "ok\n\x00\n", "tab\there\n", "\ud800\n"])
def test_sign_refuses_malformed_text(text: str) -> None:
    with pytest.raises(NoteError):
        NoteSigner.from_signer_key(GO_SIGNER_KEY).sign(text)


def test_checkpoint_text_format() -> None:
    cp = Checkpoint("example.com/log", 5, ROOT, ("ext one",))
    b64 = base64.b64encode(ROOT).decode()
    assert cp.to_text() == f"example.com/log\n5\n{b64}\next one\n"
    assert Checkpoint.from_text(cp.to_text()) == cp
    empty = base64.b64encode(EMPTY_ROOT).decode()
    assert Checkpoint("o", 0, EMPTY_ROOT).to_text() == f"o\n0\n{empty}\n"


line_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\n", min_codepoint=32),
    min_size=1,
)


@FAST
@given(
    line_text,
    st.integers(0, 2**63 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(line_text, max_size=3),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(ext))
    assert Checkpoint.from_text(cp.to_text()) == cp


B64_ROOT = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        f"o\n5\n{B64_ROOT}",
        f"\n5\n{B64_ROOT}\n",
        "o\n5\n",
        f"o\n05\n{B64_ROOT}\n",
        f"o\n00\n{B64_ROOT}\n",
        f"o\n+5\n{B64_ROOT}\n",
        f"o\n-5\n{B64_ROOT}\n",
        f"o\n 5\n{B64_ROOT}\n",
        f"o\n5 \n{B64_ROOT}\n",
        f"o\n5_0\n{B64_ROOT}\n",
        f"o\n\u0665\n{B64_ROOT}\n",
        f"o\n0x5\n{B64_ROOT}\n",
        f"o\n{2**63}\n{B64_ROOT}\n",
        f"o\n{'9' * 40}\n{B64_ROOT}\n",
        f"o\n\n{B64_ROOT}\n",
        "o\n5\n\n",
        f"o\n5\n{B64_ROOT[:-1]}\n",
        f"o\n5\n{B64_ROOT}=\n",
        f"o\n5\n {B64_ROOT}\n",
        f"o\n5\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n5\n{base64.b64encode(ROOT + b'x').decode()}\n",
        f"o\n5\n{URLSAFE_ROOT}\n",
        f"o\n5\n{B64_ROOT[:-2]}B=\n",
        f"o\n5\n{B64_ROOT}\n\n",
        f"o\n5\n{B64_ROOT}\next\n\n",
        f"o\n5\n{B64_ROOT}\r\n",
        f"o\x00\n5\n{B64_ROOT}\n",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.from_text(text)


@pytest.mark.parametrize(
    "fields",
    [("", 1, ROOT), ("a\nb", 1, ROOT), ("o", -1, ROOT), ("o", 2**63, ROOT), ("o", 1, b"x")],
)
def test_checkpoint_refuses_bad_fields(fields: tuple[str, int, bytes]) -> None:
    with pytest.raises(NoteError):
        Checkpoint(*fields)


def test_open_checkpoint() -> None:
    signer = new_signer("example.com/log")
    cp = Checkpoint("example.com/log/app_1", 5, ROOT)
    note = signer.sign(cp.to_text())
    assert open_checkpoint(note, signer.verifier()) == cp
    assert open_checkpoint(note, signer.verifier(), origin="example.com/log/app_1") == cp
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(note, signer.verifier(), origin="example.com/log/app_2")
    with pytest.raises(NoteError):
        open_checkpoint(signer.sign("not\na checkpoint\n"), signer.verifier())
    with pytest.raises(NoteError):
        open_checkpoint(note, new_signer("example.com/log").verifier())


BAD_VERIFIER_KEYS = [
    "",
    "PeterNeumann",
    "PeterNeumann+c74f20a3",
    "PeterNeumann+c74f20a3+",
    "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+0c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX",
    "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",
    GO_SIGNER_KEY,
]


@pytest.mark.parametrize("key", BAD_VERIFIER_KEYS)
def test_malformed_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_verifier_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        GO_VERIFIER_KEY,
        "PRIVATE+KEY+",
        "private+key+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumanN+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n",
    ],
)
def test_malformed_signer_keys_are_refused(key: str) -> None:
    with pytest.raises(NoteError):
        NoteSigner.from_signer_key(key)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\t", "nbsp\u00a0", "\u2028", "\ud800"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError):
        new_signer(name)


@pytest.mark.parametrize(
    "note",
    [
        "",
        GO_TEXT,
        GO_TEXT + "\n",
        GO_NOTE[:-1],
        GO_NOTE + "\n",
        GO_NOTE + "junk\n",
        GO_NOTE + "— PeterNeumann\n",
        GO_NOTE + "— PeterNeumann \n",
        GO_NOTE + "— Peter Neumann AAAAAAA=\n",
        GO_NOTE + "— PeterNeumann AAAA\n",
        GO_NOTE + "— PeterNeumann !!!!\n",
        GO_NOTE + "—  PeterNeumann AAAAAAA=\n",
        GO_NOTE.replace("— ", "-- "),
        GO_NOTE.replace("\n— ", "\n—\t"),
        GO_NOTE.replace("\n\n", "\n\r\n"),
        GO_NOTE + "— other AAAAAAA=\n" * 100,
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_verifier_key(GO_VERIFIER_KEY).verify(note)


def test_many_foreign_signatures_are_accepted_up_to_a_limit() -> None:
    foreign = "— other AAAAAAA=\n"
    verifier = NoteVerifier.from_verifier_key(GO_VERIFIER_KEY)
    assert verifier.verify(GO_NOTE + foreign * 99) == GO_TEXT
    assert verifier.verify(GO_NOTE + foreign * 15) == GO_TEXT


any_text = st.text(st.characters(exclude_categories=()))


def _only_note_errors(call: object, *args: object) -> object:
    assert callable(call)
    try:
        return call(*args)
    except NoteError:
        return None


@FAST
@given(any_text)
def test_arbitrary_text_raises_only_note_error(text: str) -> None:
    verifier = NoteVerifier.from_verifier_key(GO_VERIFIER_KEY)
    _only_note_errors(NoteVerifier.from_verifier_key, text)
    _only_note_errors(NoteSigner.from_signer_key, text)
    _only_note_errors(Checkpoint.from_text, text)
    _only_note_errors(verifier.verify, text)
    _only_note_errors(open_checkpoint, text, verifier)


@FAST
@given(
    st.sampled_from([GO_NOTE, GO_VERIFIER_KEY, GO_SIGNER_KEY]),
    st.integers(0, 200),
    st.integers(0, 3),
    any_text,
)
def test_mutated_notes_and_keys_raise_only_note_error(
    original: str, position: int, cut: int, insert: str
) -> None:
    position %= len(original) + 1
    text = original[:position] + insert + original[position + cut :]
    verifier = NoteVerifier.from_verifier_key(GO_VERIFIER_KEY)
    assert _only_note_errors(verifier.verify, text) in (None, GO_TEXT)
    parsed = _only_note_errors(NoteVerifier.from_verifier_key, text)
    if isinstance(parsed, NoteVerifier):
        name, key_id, key = text.split("+", 2)
        assert parsed.verifier_key() == f"{name}+{key_id.lower()}+{key}"
    _only_note_errors(NoteSigner.from_signer_key, text)
    _only_note_errors(open_checkpoint, text, verifier)
