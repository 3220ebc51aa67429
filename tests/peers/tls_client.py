"""A Python `websockets` client over TLS (asyncio), the peer for wss:// server tests.

usage: python tls_client.py URL CA.pem SCENARIO

Trusts only CA.pem. Scenarios:
  echo   text, binary (larger than a TLS record), 1 MiB, fragmented and ping against
         an echo server, then a normal close
  open   open the connection and close it normally (a server that does not echo)
Prints `ok=True close=<code the server answered>`, or fails with a traceback.

Asyncio rather than the sync client: the sync client reads on a thread of its own while
the caller writes, on one OpenSSL session, and a TLS 1.3 session ticket arriving during
its first write then stalls it now and then (seen as the server's 408).
The process exits by itself after $PEER_TIMEOUT seconds (default 60).
"""

import asyncio
import os
import signal
import ssl
import sys

from websockets.asyncio.client import connect

TIMEOUT = 10


async def echo(ws, message):
    await ws.send(message)
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    if got != message:
        raise AssertionError(f"echo mismatch: sent {len(message)}, got {len(got)}")


async def main():
    signal.alarm(int(os.environ.get("PEER_TIMEOUT", "60")))
    url, ca, scenario = sys.argv[1:4]
    tls = ssl.create_default_context(cafile=ca)
    async with connect(
        url, ssl=tls, max_size=16 * 1024 * 1024, compression=None, ping_interval=None,
        open_timeout=TIMEOUT, close_timeout=TIMEOUT,
    ) as ws:
        if scenario == "echo":
            for text in ["hello", "", "héllo wörld ☃ 😀", "z" * 65536]:
                await echo(ws, text)
            for data in [b"", os.urandom(16 * 1024 + 1), os.urandom(1 << 20)]:
                await echo(ws, data)
            await ws.send(["frag1 ", "frag2 ", "frag3"])
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "frag1 frag2 frag3"
            pong = await ws.ping(b"over tls")
            await asyncio.wait_for(pong, TIMEOUT)
        elif scenario != "open":
            raise SystemExit(f"unknown scenario {scenario}")
        await ws.close()
        print(f"ok=True close={ws.close_code}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
