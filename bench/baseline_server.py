"""The benchmark's baseline: a bare aiohttp handler that checks GHL's signature.

It verifies the Ed25519 `X-GHL-Signature` over the raw body and answers 200,
nothing more: the least any Delivery URL must do. Run by bench/run.py as its
own process (so its memory is its own): `baseline_server.py PORT`, with the
public key PEM in BENCH_GHL_PUBLIC_KEY_PEM.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

DELIVERY_PATH = "/webhooks/ghl/outbound"


def make_app(public_key_pem: str) -> web.Application:
    """The baseline application: one signed route and a readiness probe."""
    key = load_pem_public_key(public_key_pem.encode("ascii"))
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("the baseline needs an Ed25519 public key")

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            signature = base64.b64decode(request.headers["X-GHL-Signature"])
            key.verify(signature, body)
        except (KeyError, binascii.Error, InvalidSignature):
            return web.json_response({"error": "invalid_signature"}, status=401)
        return web.json_response({"status": "accepted"})

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post(DELIVERY_PATH, receive)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    """Serve on 127.0.0.1 at the port given as the only argument."""
    port = int(sys.argv[1])
    app = make_app(os.environ["BENCH_GHL_PUBLIC_KEY_PEM"])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
