"""The console's pure modules in Chromium: the search syntax (query.mjs) and the verification
(verify.mjs: JCS, SHA-256, the RFC 9162 path, the C2SP note's Ed25519 signature by WebCrypto),
run on a real entry, proof and checkpoint from a real server, and on tampered copies."""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.console_pages import Seeded, console_page
from tests.integration.http_api import events_url, expect_status
from tests.servers import Server
from trailkeep.log.notes import NoteSigner

pytestmark = pytest.mark.timeout(120)

PARSE = """async (cases) => {
  const q = await import("/console/query.mjs");
  return cases.map(([tab, text]) => q.searchParams(tab, text));
}"""


APP_NAME = "console modules"  # the app `seeded` (tests/browser/conftest.py) makes


@pytest.fixture(scope="module")
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """One page on the server's origin (the console, signed out), to import modules in."""
    with console_page(browser) as opened:
        opened.goto(f"{server.url}/console")
        opened.wait_for_selector("#signin-key")
        yield opened


def parsed(page: Page, *cases: tuple[str, str]) -> list[dict[str, Any]]:
    """`searchParams(tab, text)` of each case, in the page."""
    result: list[dict[str, Any]] = page.evaluate(PARSE, [list(c) for c in cases])
    return result


def test_every_qualifier_becomes_the_list_apis_parameters(page: Page) -> None:
    cases = {
        "action:order.refund": [["action", "order.refund"]],
        "action:order.refund action:cart.add": [["action", "order.refund"], ["action", "cart.add"]],
        "action:order.*": [["action_prefix", "order."]],
        "-action:audit.read": [["exclude_action", "audit.read"]],
        "actor:user_42": [["actor", "user_42"]],
        'actor:"Ada Lovelace"': [["actor", "Ada Lovelace"]],
        "target:order/ord_9": [["target_type", "order"], ["target_id", "ord_9"]],
        "target:a/b/c": [["target_type", "a"], ["target_id", "b/c"]],
        "target:ord_9": [["target_id", "ord_9"]],
        "target_type:order": [["target_type", "order"]],
        "kind:user": [["kind", "user"]],
        "changed:price": [["changed_path", "/price"]],
        "changed:/address/city": [["changed_path", "/address/city"]],
        "since:2026-11-01": [["since", "2026-11-01T00:00:00Z"]],
        "until:2026-11-02": [["until", "2026-11-02T23:59:59.999999Z"]],
        "since:2026-11-01T08:00:00+01:00": [["since", "2026-11-01T08:00:00+01:00"]],
        "  ACTION:x.y   ": [["action", "x.y"]],
        "": [],
    }
    got = parsed(page, *(("all", text) for text in cases))
    for (text, want), result in zip(cases.items(), got, strict=True):
        assert result == {"params": want, "errors": []}, text
    # Tabs add their kind; a contradicting kind: is said, not silently emptied.
    admin, user, clash, same = parsed(
        page, ("admin", "actor:ada"), ("user", ""), ("admin", "kind:user"), ("user", "kind:user")
    )
    assert admin == {"params": [["actor", "ada"], ["kind", "admin"]], "errors": []}
    assert user == {"params": [["kind", "user"]], "errors": []}
    assert clash["errors"] == ["kind:user: this tab shows administrator actions; use All"]
    assert same == {"params": [["kind", "user"]], "errors": []}


def test_what_cannot_be_searched_is_said_term_by_term(page: Page) -> None:
    cases = {
        "refund": (
            "refund: use a qualifier, such as action:refund, actor:refund or target:TYPE/refund"
        ),
        "actor:": "actor:: give a value after the colon",
        "colour:red": "colour:red: unknown qualifier",
        "-actor:bob": "-actor:bob: only action can be excluded",
        "-action:order.*": "-action:order.*: exclude exact actions, not a prefix",
        "action:or*der": "action:or*der: * only at the end",
        "kind:robot": "kind:robot: kind is admin or user",
        "since:2026-02-30": "since:2026-02-30: a date (2026-11-01) or an RFC 3339 time",
        "until:yesterday": "until:yesterday: a date (2026-11-02) or an RFC 3339 time",
        "actor:a actor:b": "actor:b: only one actor at a time",
        "since:2026-11-03 until:2026-11-02": "since: is after until",
    }
    got = parsed(page, *(("all", text) for text in cases))
    for (text, want), result in zip(cases.items(), got, strict=True):
        assert len(result["errors"]) == 1, (text, result)
        assert result["errors"][0].startswith(want), (text, result)
    # The same day as since and until is that whole day.
    (day,) = parsed(page, ("all", "since:2026-11-02 until:2026-11-02"))
    assert day == {"params": [["since", "2026-11-02T00:00:00Z"],
                              ["until", "2026-11-02T23:59:59.999999Z"]], "errors": []}  # fmt: skip


def test_term_quotes_what_needs_it_and_round_trips(page: Page) -> None:
    got = page.evaluate("""async (values) => {
      const q = await import("/console/query.mjs");
      return values.map((v) => {
        const text = q.term("actor", v);
        return [text, q.parseQuery(text).params];
      });
    }""", ["user_42", "Ada Lovelace", 'say "hi"', "back\\slash"])  # fmt: skip
    assert got == [
        ["actor:user_42", [["actor", "user_42"]]],
        ['actor:"Ada Lovelace"', [["actor", "Ada Lovelace"]]],
        ['actor:"say \\"hi\\""', [["actor", 'say "hi"']]],
        ['actor:"back\\\\slash"', [["actor", "back\\slash"]]],
    ]


VERIFY = """async ([proven, key, app]) => {
  const v = await import("/console/verify.mjs");
  try {
    const verifier = await v.parseVerifierKey(key);
    return {ok: true, value: await v.verifyProven(proven, verifier, app)};
  } catch (error) {
    return {ok: false, step: error.step ?? null, message: error.message};
  }
}"""


def flip_hex(text: str, at: int = 0) -> str:
    """The hex string with one byte changed."""
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 0x01
    return raw.hex()


def flip_signature(note: str) -> str:
    """The note with one byte of its Ed25519 signature changed (not the key id)."""
    text, _, block = note.rpartition("\n\n")
    prefix, _, sig = block.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 0x01
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


def test_verify_accepts_the_real_proof_and_names_each_tampering(
    page: Page, server: Server, seeded: Seeded
) -> None:
    app = seeded.app_id
    entry_id = seeded.entries["refund"]["id"]
    with server.client(seeded.tenant.key) as client:
        proven = expect_status(
            client.get(events_url(app, f"events/{entry_id}"), params={"proof": "true"})
        ).json()
        key = expect_status(client.get("/v1/checkpoint-key")).text
    assert proven["proof"]["path"], "a tree of several entries has a path to check"

    def verify(value: dict[str, Any], with_key: str = key, app_id: str = app) -> dict[str, Any]:
        result: dict[str, Any] = page.evaluate(VERIFY, [value, with_key, app_id])
        return result

    good = verify(proven)
    assert good["ok"], good
    size = proven["proof"]["tree_size"]
    root = proven["checkpoint"].split("\n")[2]
    assert good["value"]["treeSize"] == size
    assert good["value"]["root"] == root
    assert good["value"]["signer"] == key.split("+")[0] + "+" + key.split("+")[1]
    assert good["value"]["origin"].endswith("/" + app)
    assert good["value"]["leaf"] == proven["entry"]["leaf_hash"]

    def tampered(change: Any) -> dict[str, Any]:
        copied = copy.deepcopy(proven)
        change(copied)
        return verify(copied)

    cases: list[tuple[Any, str, str]] = [
        (lambda p: p["proof"]["path"].__setitem__(0, flip_hex(p["proof"]["path"][0])),
         "path", "the audit path does not lead to the checkpoint's root"),
        (lambda p: p["proof"]["path"].__setitem__(-1, flip_hex(p["proof"]["path"][-1], 31)),
         "path", "the audit path does not lead to the checkpoint's root"),
        (lambda p: p["entry"]["metadata"].__setitem__("amount", 4999),
         "leaf", "the entry's content does not hash to its leaf_hash: it was changed"),
        (lambda p: p["entry"]["actor"].__setitem__("id", "user_43"),
         "leaf", "the entry's content does not hash to its leaf_hash: it was changed"),
        (lambda p: p.__setitem__("checkpoint", flip_signature(p["checkpoint"])),
         "signature", "bad signature by "),
        (lambda p: p["proof"].__setitem__("path", p["proof"]["path"][:-1]),
         "path", "the audit path is too short"),
        (lambda p: p["proof"].__setitem__("seq", p["proof"]["seq"] + 1),
         "path", "the proof is for seq"),
    ]  # fmt: skip
    for change, step, message in cases:
        result = tampered(change)
        assert not result["ok"], (message, result)
        assert result["step"] == step, result
        assert result["message"].startswith(message), result
    # Both the entry and its recorded leaf hash changed: the proof no longer matches the leaf.
    both = copy.deepcopy(proven)
    both["entry"]["metadata"]["amount"] = 1
    both["entry"]["leaf_hash"] = flip_hex(both["entry"]["leaf_hash"])
    changed = "the entry's content does not hash to its leaf_hash: it was changed"
    assert verify(both)["message"] == changed
    # Another signer's key of the same name: the note has no signature by the pinned key.
    other_key = NoteSigner(key.split("+")[0], os.urandom(32)).verifier_key()
    refused = verify(proven, with_key=other_key)
    assert refused["step"] == "signature"
    assert refused["message"].startswith(f"no signature by the pinned key {key.split('+')[0]}+")
    # A key that is not one (its id does not match it) is refused before anything is checked.
    name, _, rest = key.partition("+")
    broken = verify(proven, with_key=f"{name}+00000000+{rest.partition('+')[2]}")
    assert (broken["step"], broken["message"]) == (
        "key", "the checkpoint key's id does not match the key"
    )  # fmt: skip
    # The checkpoint of another app: refused by its origin line.
    wrong_app = verify(proven, app_id="app_someoneelse")
    assert wrong_app["step"] == "entry"


def test_canonical_json_is_rfc_8785(page: Page) -> None:
    got = page.evaluate("""async () => {
      const v = await import("/console/verify.mjs");
      return [
        v.canonicalJson({b: 1, a: [true, null, "x"], "é": 1e21, "\\u0000": 0.1, c: -0}),
        v.canonicalJson({"\\u20ac": 1, "\\ud83d\\ude00": 2, "\\u00e9": 3}),
        v.canonicalJson({n: 1e21, m: 4.5e-7, i: 9007199254740991, f: 49.99}),
      ];
    }""")  # fmt: skip
    assert got[0] == '{"\\u0000":0.1,"a":[true,null,"x"],"b":1,"c":0,"é":1e+21}'
    # UTF-16 code-unit order: U+00E9, U+20AC, then the surrogate pair of U+1F600.
    assert got[1] == '{"é":3,"€":1,"😀":2}'
    assert got[2] == '{"f":49.99,"i":9007199254740991,"m":4.5e-7,"n":1e+21}'
