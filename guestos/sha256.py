"""SHA-256 for the kernel's deterministic randomness and the built-in root's cache key.

The interpreter's own implementation, where it has one: `hashlib` loads OpenSSL's libcrypto at import
(~11 M instructions, ~1% of a whole balloon CI test) for the few digests a run takes. Same digests."""
try:
    from _sha256 import sha256              # Python 3.11
except ImportError:
    try:
        from _sha2 import sha256            # 3.12 and later
    except ImportError:                     # an interpreter built without them
        from hashlib import sha256

__all__ = ["sha256"]
