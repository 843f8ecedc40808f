"""VERIFY.txt: how a recipient checks a bundle, with our command or with any SHA-256, HMAC and Ed25519 tools."""

TEMPLATE = """HOW TO VERIFY THIS RELEASE
==========================

With the publisher's tool (no database needed):

    python manage.py audit_verify_bundle THIS_BUNDLE.zip --public-key audit-signing.pub

It exits 0 when everything below holds, and 1 naming each file or entry at fault.

The public key
--------------
Get the publisher's public key from a channel you trust, and compare its fingerprint (SHA-256 of the raw 32-byte
Ed25519 key) with the one below and with "signature_key_fingerprint" in manifest.json:

    {fingerprint}

For convenience, the key this bundle was signed with:

{public_key}
The algorithm, to check without our code
----------------------------------------
Canonical JSON: keys sorted, no spaces (separators "," and ":"), UTF-8, non-ASCII characters unescaped.
Hex means lower-case hexadecimal.

1. manifest.json: take the object without "signature" and "signature_key_fingerprint", serialise it as canonical
   JSON, and verify "signature" (hex) over those bytes with Ed25519 and the public key.
2. For every name in manifest "files": SHA-256 of the file in the ZIP must equal the hex value listed.
3. Walk proof.jsonl line by line. Positions run from chain.first_index to chain.last_index without a gap.
   Start with prev = chain.start_prev_hash.
   - A line with "digest" is a position outside the request's scope: digest = that value.
   - Any other line is a released entry; records.jsonl has its record at the same chain_index, in the same order.
     For each name in manifest "committed_fields":
       if the name is in "commitments", commitment = that value (the value was withheld: the record shows the
       [REDACTED (exemption)] mark instead);
       otherwise commitment = hex(SHA-256(field_salt || UTF-8(name) || canonical JSON of the record's value)),
       with field_salt = the bytes of "field_salts"[name].
     digest = hex(SHA-256(canonical JSON of {{name: commitment}})).
   - hash = hex(SHA-256(bytes(prev) || bytes(digest))), each as its 32 raw bytes. It must equal the line's "hash".
     Then prev = hash.
4. The last hash must equal chain.head_hash and signed_digest.head_hash.
5. The signed digest: verify signed_digest.signature (hex) with Ed25519 over the canonical JSON of
   {{"chain_index", "head_hash", "signed_at", "prev_signature"}} from signed_digest.

If all holds, every released value is the one recorded, nothing in the range was removed, added or reordered, and
each withheld field is accounted for by its commitment, without revealing it.
"""


def verify_instructions(public_key_pem: bytes, fingerprint: str) -> bytes:
    indented = "".join(f"    {line}\n" for line in public_key_pem.decode("ascii").splitlines())
    return TEMPLATE.format(fingerprint=fingerprint, public_key=indented).encode("utf-8")
