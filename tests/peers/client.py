"""A Python `websockets` client, the peer for sockeye-std's server tests.

usage: python client.py URL SCENARIO [ARG]

Runs one scenario against an echo server and prints what it saw as `key=value` lines;
the Rust test asserts on them. Scenarios:
  text, binary, large, fragmented, ping   exchange messages; ok=True, or a traceback
  close CODE                              close with CODE, report the server's answer
  server_close CODE                       ask the server to close with CODE, report it
  origin ORIGIN                           connect with that Origin; report accepted/status
  subprotocol [ORIGIN]                    offer "superchat", "chat"; report the choice
  deflate default|limited                 offer permessage-deflate (websockets' default
                                          offer, or one asking the server for a 10-bit
                                          window and no context takeover), exchange
                                          small, large compressible, random and
                                          fragmented messages; report the 101's
                                          extensions and the server's "deflate?" answer
Every other scenario connects without compression.
The process exits by itself after $PEER_TIMEOUT seconds (default 60).
"""

import os
import signal
import sys

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

TIMEOUT = 10


def echo(ws, message):
    ws.send(message)
    got = ws.recv(timeout=TIMEOUT)
    if got != message:
        raise AssertionError(
            f"echo mismatch: sent {type(message).__name__} of {len(message)}, "
            f"got {type(got).__name__} of {len(got)}"
        )


def close_report(ws):
    rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
    return {
        "rcvd_code": rcvd.code if rcvd else None,
        "rcvd_reason": rcvd.reason if rcvd else None,
        "sent_code": sent.code if sent else None,
        "rcvd_then_sent": ws.protocol.close_rcvd_then_sent,
    }


def run(ws, scenario, arg):
    if scenario == "text":
        for text in ["hello", "", "héllo wörld ☃ 😀", "x" * 125, "y" * 126, "z" * 65536]:
            echo(ws, text)
    elif scenario == "binary":
        for data in [b"", bytes(range(256)), os.urandom(65535), os.urandom(65536)]:
            echo(ws, data)
    elif scenario == "large":
        echo(ws, os.urandom(1 << 20))
        echo(ws, "é" * (1 << 19))
    elif scenario == "fragmented":
        ws.send(["frag1 ", "frag2 ", "frag3"])
        assert ws.recv(timeout=TIMEOUT) == "frag1 frag2 frag3"
        ws.send([b"\x00\x01", b"", b"\x02" * 70000])
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01" + b"\x02" * 70000
    elif scenario == "ping":
        for payload in [b"", b"abc", b"p" * 125]:
            if not ws.ping(payload).wait(TIMEOUT):
                raise AssertionError(f"no pong for a ping of {len(payload)} bytes")
        echo(ws, "still open")
    elif scenario == "close":
        ws.close(int(arg), "bye")
        return close_report(ws)
    elif scenario == "deflate":
        echo(ws, "hello")
        lines = "".join(f"line {i % 97} of the log, status {i % 7}\n" for i in range(40000))
        echo(ws, lines)  # about 1 MiB that compresses well
        echo(ws, lines.encode()[: 1 << 16])
        echo(ws, os.urandom(1 << 16))
        ws.send([lines[:5000], lines[5000:20000], lines[20000:20001]])
        assert ws.recv(timeout=TIMEOUT) == lines[:20001]
        ws.send("deflate?")
        server_params = ws.recv(timeout=TIMEOUT)
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        ws.close()
        return {"ok": True, "extensions": extensions, "server_params": server_params}
    elif scenario == "server_close":
        ws.send(f"close:{arg}:server says bye")
        try:
            ws.recv(timeout=TIMEOUT)
            raise AssertionError("expected the server to close")
        except ConnectionClosed:
            pass
        return close_report(ws)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    ws.close()
    return {"ok": True, **close_report(ws)}


def main():
    signal.alarm(int(os.environ.get("PEER_TIMEOUT", "60")))
    url, scenario = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    options = dict(
        max_size=16 * 1024 * 1024,
        compression=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
    )
    if scenario == "deflate":
        options["compression"] = "deflate" if arg == "default" else None
        if arg == "limited":
            options["extensions"] = [
                ClientPerMessageDeflateFactory(
                    server_max_window_bits=10,
                    server_no_context_takeover=True,
                    client_max_window_bits=True,
                    compress_settings={"memLevel": 5},
                )
            ]
    if scenario == "origin":
        try:
            with connect(url, origin=arg, **options) as ws:
                ws.close()
            report = {"accepted": True}
        except InvalidStatus as e:
            report = {"accepted": False, "status": e.response.status_code}
    elif scenario == "subprotocol":
        offer = ["superchat", "chat"]
        with connect(url, subprotocols=offer, origin=arg, **options) as ws:
            echo(ws, "hi")
            report = {"subprotocol": ws.subprotocol}
    else:
        with connect(url, **options) as ws:
            report = run(ws, scenario, arg)
    for key, value in report.items():
        print(f"{key}={value}", flush=True)


if __name__ == "__main__":
    main()
