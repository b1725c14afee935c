"""Times psrpcore's CLIXML deserializer on whole documents: one JSON line per file.

    python bench/psrpcore_decode.py FILE...
"""
import json
import sys
import time

from psrpcore.types import PSCryptoProvider, deserialize_clixml


class NoCipher(PSCryptoProvider):
    """The benchmark documents hold no SecureString."""

    def decrypt(self, value):
        raise NotImplementedError

    def encrypt(self, value):
        raise NotImplementedError

    def register_key(self, key):
        raise NotImplementedError


for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = time.perf_counter()
    objects = deserialize_clixml(text, NoCipher())
    elapsed = time.perf_counter() - start
    print(json.dumps({"file": path, "objects": len(objects), "bytes": len(text.encode()), "seconds": elapsed}), flush=True)
