"""A Python `websockets` echo server, the peer for sockeye-std's client tests.

usage: python echo_server.py [deflate]  prints "PORT <n>" once listening on 127.0.0.1

With "deflate" it answers permessage-deflate offers with websockets' defaults (a 12-bit
window each way); without, it declines them.

Echoes every message unchanged. Text messages starting with a command do something else:
  "close:CODE:REASON"   close the connection with CODE and REASON
  "fragments:A|B|C"     answer with one text message sent as the fragments A, B, C
  "ping:PAYLOAD"        ping the client, wait for its pong, answer "pong:PAYLOAD"
With $PEER_TLS_CERT and $PEER_TLS_KEY (PEM files) it serves TLS (wss://).
The process exits by itself after $PEER_TIMEOUT seconds (default 60).
"""

import os
import signal
import ssl
import sys

from websockets.sync.server import serve


def handler(ws):
    for message in ws:
        if isinstance(message, str) and message.startswith("close:"):
            _, code, reason = message.split(":", 2)
            ws.close(int(code), reason)
            return
        if isinstance(message, str) and message.startswith("fragments:"):
            ws.send(message[len("fragments:"):].split("|"))
            continue
        if isinstance(message, str) and message.startswith("ping:"):
            payload = message[len("ping:"):]
            if ws.ping(payload.encode()).wait(5):
                ws.send("pong:" + payload)
            else:
                ws.send("no pong")
            continue
        ws.send(message)


def main():
    signal.alarm(int(os.environ.get("PEER_TIMEOUT", "60")))
    deflate = sys.argv[1:] == ["deflate"]
    tls = None
    if os.environ.get("PEER_TLS_CERT"):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(os.environ["PEER_TLS_CERT"], os.environ["PEER_TLS_KEY"])
    with serve(
        handler,
        "127.0.0.1",
        0,
        max_size=16 * 1024 * 1024,
        compression="deflate" if deflate else None,
        ping_interval=None,
        ssl=tls,
    ) as server:
        print("PORT", server.socket.getsockname()[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
