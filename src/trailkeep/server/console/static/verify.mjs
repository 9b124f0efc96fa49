// Verification in the browser, trusting nothing the server says: the entry's leaf hash is
// recomputed from its content (RFC 8785 canonical JSON, SHA-256 with the 0x00 leaf prefix), the
// RFC 9162 audit path is folded up to the root, and the C2SP checkpoint note's Ed25519
// signature is checked with WebCrypto against the verifier key pinned at sign-in. The same
// checks as the Python core (trailkeep.log.verify), the same order, the failure named.
//
// Pure functions plus crypto.subtle; no DOM, no fetch (tests import it in a page).

const encoder = new TextEncoder();
const SIG_PREFIX = "\u2014 ";
const ED25519 = 0x01;

/** A failed check: `step` is which one ("entry", "leaf", "path", "signature", ...). */
export class VerifyFailure extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

/** RFC 8785 (JCS) canonical JSON of a parsed value: sorted keys, ECMAScript number form. */
export function canonicalJson(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new VerifyFailure("entry", "a number that JSON cannot hold");
    // ECMAScript's own number form is JCS's. JSON.parse would round an integer past 2^53, but
    // the server refuses those (I-JSON), so every number an entry holds reads back exactly.
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  // Keys in UTF-16 code-unit order, which is what Array.prototype.sort compares.
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
}

/** Lower-case hex of bytes. */
export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a hex string; a VerifyFailure naming `what` when it is not 32 bytes of hex. */
export function fromHex(text, what) {
  if (typeof text !== "string" || !/^[0-9a-fA-F]{64}$/.test(text)) {
    throw new VerifyFailure("malformed", `${what} is not a 32-byte hex hash`);
  }
  return Uint8Array.from(text.match(/../g), (pair) => parseInt(pair, 16));
}

function fromBase64(text, what) {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    throw new VerifyFailure("malformed", `${what} is not base64`);
  }
}

function base64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

async function sha256(...parts) {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** SHA-256(0x00 || JCS(entry without leaf_hash)), as the server computed it. */
export async function leafHash(entry) {
  const { leaf_hash: _, ...content } = entry;
  return sha256(Uint8Array.of(0), encoder.encode(canonicalJson(content)));
}

/** SHA-256(0x01 || left || right): an interior node. */
export function hashChildren(left, right) {
  return sha256(Uint8Array.of(1), left, right);
}

/** The root an RFC 9162 §2.1.3.2 inclusion proof leads to; VerifyFailure if it is malformed. */
export async function rootFromInclusionProof(leaf, index, size, path) {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
    throw new VerifyFailure("path", `leaf index ${index} is not in a tree of size ${size}`);
  }
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) throw new VerifyFailure("path", "the audit path is too long");
    if (fn % 2 === 1 || fn === sn) {
      r = await hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new VerifyFailure("path", "the audit path is too short");
  return r;
}

function validName(name) {
  return name !== "" && !name.includes("+") && !/[\s\u0000-\u001f]/.test(name);
}

/**
 * A note verifier key, `<name>+<key id hex>+<base64(0x01 || public key)>` (Go's sumdb/note),
 * parsed and checked (its key id recomputed), with its WebCrypto public key.
 */
export async function parseVerifierKey(text) {
  // Split at the first two "+" only: base64 holds "+" too.
  const [, name, id, key] = /^([^+]*)\+([^+]*)\+(.*)$/s.exec(String(text).trim()) ?? [];
  if (!validName(name ?? "") || !/^[0-9a-f]{8}$/i.test(id ?? "")) {
    throw new VerifyFailure("key", "the checkpoint key is not a note verifier key");
  }
  const raw = fromBase64(key ?? "", "the checkpoint key");
  if (raw.length !== 33 || raw[0] !== ED25519) {
    throw new VerifyFailure("key", "the checkpoint key is not an Ed25519 key");
  }
  const digest = await sha256(encoder.encode(name), Uint8Array.of(0x0a), raw);
  const keyId = new DataView(digest.buffer).getUint32(0);
  if (keyId !== parseInt(id, 16)) {
    throw new VerifyFailure("key", "the checkpoint key's id does not match the key");
  }
  const publicKey = await crypto.subtle.importKey(
    "raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"],
  );
  return { name, keyId, publicKey, text: String(text).trim() };
}

/** Check a signed note's signature by `verifier`; returns the note's text (what was signed). */
export async function openNote(note, verifier) {
  if (typeof note !== "string" || /[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    throw new VerifyFailure("checkpoint", "the checkpoint is not a note (control characters)");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) {
    throw new VerifyFailure("checkpoint", "the checkpoint has no signature block");
  }
  const text = note.slice(0, split + 1);
  let found = false;
  for (const line of note.slice(split + 2, -1).split("\n")) {
    if (!line.startsWith(SIG_PREFIX)) {
      throw new VerifyFailure("checkpoint", "the checkpoint has a malformed signature line");
    }
    const [name, sig] = line.slice(SIG_PREFIX.length).split(" ");
    const blob = fromBase64(sig ?? "", "a signature");
    if (blob.length < 5) throw new VerifyFailure("signature", "a signature is too short");
    const keyId = new DataView(blob.buffer).getUint32(0);
    // Another key's signature (a witness, a co-signer) is not ours to judge: skip it.
    if (name !== verifier.name || keyId !== verifier.keyId) continue;
    const good = blob.length === 68 && await crypto.subtle.verify(
      { name: "Ed25519" }, verifier.publicKey, blob.slice(4), encoder.encode(text),
    );
    if (!good) throw new VerifyFailure("signature", `bad signature by ${verifier.name}`);
    found = true;
  }
  if (!found) {
    const id = verifier.keyId.toString(16).padStart(8, "0");
    throw new VerifyFailure("signature", `no signature by the pinned key ${verifier.name}+${id}`);
  }
  return text;
}

/** The C2SP tlog-checkpoint body: origin, size, root (and extension lines). */
export function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || !/^(0|[1-9]\d{0,18})$/.test(lines[1])) {
    throw new VerifyFailure("checkpoint", "the checkpoint body is malformed");
  }
  const root = fromBase64(lines[2], "the checkpoint root");
  if (root.length !== 32) throw new VerifyFailure("checkpoint", "the checkpoint root is not 32 bytes");
  return { origin: lines[0], size: Number(lines[1]), root };
}

/**
 * Verify `GET /v1/apps/{app}/events/{id}?proof=true`'s answer (`{entry, proof, checkpoint}`)
 * against the pinned key. Resolves to `{treeSize, root, signer, origin, seq, leaf, erased}`;
 * rejects with a VerifyFailure saying exactly what failed.
 */
export async function verifyProven(proven, verifier, appId) {
  const { entry, proof, checkpoint } = proven ?? {};
  if (!entry || !proof || typeof checkpoint !== "string") {
    throw new VerifyFailure("malformed", "the answer lacks the entry, its proof or a checkpoint");
  }
  const recorded = fromHex(entry.leaf_hash, "the entry's leaf_hash");
  let leaf = recorded;
  const erased = entry.erased === true;
  if (!erased) {
    if (appId !== undefined && entry.app_id !== appId) {
      throw new VerifyFailure("entry", `the entry belongs to app ${entry.app_id}, not ${appId}`);
    }
    leaf = await leafHash(entry);
    if (!equal(leaf, recorded)) {
      throw new VerifyFailure("leaf", "the entry's content does not hash to its leaf_hash: it was changed");
    }
  }
  if (proof.seq !== entry.seq) {
    throw new VerifyFailure("path", `the proof is for seq ${proof.seq}, the entry is seq ${entry.seq}`);
  }
  if (!equal(fromHex(proof.leaf_hash, "the proof's leaf hash"), leaf)) {
    throw new VerifyFailure("leaf", "the proof is for another leaf than this entry's");
  }
  if (!Array.isArray(proof.path)) throw new VerifyFailure("malformed", "the proof has no path");
  const path = proof.path.map((h, i) => fromHex(h, `path hash ${i}`));
  const text = await openNote(checkpoint, verifier);
  const body = parseCheckpoint(text);
  if (appId !== undefined && !body.origin.endsWith(`/${appId}`)) {
    throw new VerifyFailure("checkpoint", `the checkpoint is for ${body.origin}, not this app`);
  }
  if (body.size !== proof.tree_size) {
    throw new VerifyFailure("path", `the proof is for tree size ${proof.tree_size}, the checkpoint's is ${body.size}`);
  }
  const root = await rootFromInclusionProof(leaf, entry.seq, body.size, path);
  if (!equal(root, body.root)) {
    throw new VerifyFailure("path", "the audit path does not lead to the checkpoint's root");
  }
  return {
    treeSize: body.size, root: base64(body.root), rootHex: hex(body.root),
    signer: `${verifier.name}+${verifier.keyId.toString(16).padStart(8, "0")}`,
    origin: body.origin, seq: entry.seq, leaf: hex(leaf), erased,
  };
}
