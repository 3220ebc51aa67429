#!/usr/bin/env python3
"""Writes the hand-made seeds in fuzz/seeds/<target>/ (the input layouts are documented
in core/src/fuzzing.rs). Re-running it rewrites only the files it names, so seeds that
libFuzzer found (named `found-*`) are kept."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the masking key of RFC 6455 §5.7


def frame(opcode, payload, fin=True, key=None, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    m = 0x80 if key else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if key:
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- frame_decode: [flags: bit0 client, bits1-3 limit index] [n] [n chunk sizes] [wire]
# limit index: 0:0 1:1 2:125 3:126 4:200 5:4096 6:65535 7:65536
SERVER, CLIENT = 0, 1


def fd(name, side, limit, sizes, wire):
    write("frame_decode", name, bytes([side | (limit << 1), len(sizes) - 1] + sizes) + wire)


fd("rfc-5.7-unmasked-hello", CLIENT, 5, [255], bytes.fromhex("810548656c6c6f"))
fd("rfc-5.7-masked-hello", SERVER, 5, [0], bytes.fromhex("818537fa213d7f9f4d5158"))
fd("rfc-5.7-fragmented-hello", CLIENT, 5, [1, 2], bytes.fromhex("010348656c80026c6f"))
fd("rfc-5.7-ping-pong", SERVER, 2, [3],
   frame(9, b"Hello", key=KEY) + frame(10, b"Hello", key=KEY))
fd("rfc-5.7-256-binary", CLIENT, 5, [100, 129], frame(2, bytes(range(256))))
fd("rfc-5.7-64k-header-partial", CLIENT, 7, [255], bytes.fromhex("827f0000000000010000") + bytes(1000))
fd("close-1000-bye", SERVER, 2, [0, 5], frame(8, struct.pack(">H", 1000) + b"bye", key=KEY))
fd("mixed-stream", SERVER, 6, [7, 0, 200],
   frame(1, b"Hel", fin=False, key=KEY) + frame(9, b"", key=KEY)
   + frame(0, b"lo", key=KEY) + frame(2, bytes(300), key=KEY) + frame(8, b"", key=KEY))
fd("over-limit", CLIENT, 2, [1], frame(2, bytes(126)))
fd("reserved-opcode", CLIENT, 5, [255], bytes([0x83, 0x00]))
fd("non-minimal-length", CLIENT, 5, [255], bytes.fromhex("827e007d") + bytes(125))
fd("length-top-bit", CLIENT, 7, [255], bytes.fromhex("827f8000000000000000"))
fd("wrong-mask-server", SERVER, 5, [255], frame(1, b"Hello"))
fd("rsv-bit", SERVER, 5, [255], frame(1, b"Hello", key=KEY, rsv=4))


# --- connections: [config flags] ([8-byte entropy seed] for clients) then operations.
def raw(data):  # op 0: bytes as given, chunk size byte first (<128: size-1)
    out = b""
    while data:
        part, data = data[:128], data[128:]
        out += bytes([0, len(part) - 1]) + part
    return out


def fr(opcode_idx, payload=b"", fin=True, split=255, wrong_mask=False, close_code=None):
    # op 80: [flags][len][(close: 0 + u16 code)][payload][split]
    flags = opcode_idx | (0 if fin else 8) | (0x30 if wrong_mask else 0)
    if close_code is not None:
        n = len(payload) + 2
        body = bytes([0]) + struct.pack(">H", close_code - 1000) + payload
    else:
        n = len(payload)
        body = payload
    if n < 200:
        ln = bytes([n])
    else:
        ln = bytes([255]) + struct.pack(">H", n)
    return bytes([80, flags]) + ln + body + bytes([split])


TEXT, BINARY, CONT, PING, PONG, CLOSE = 0, 1, 2, 4, 5, 6


def tick(ms):
    return bytes([140]) + struct.pack(">H", ms)


FIRE, EOF, STALL = bytes([170]), bytes([185]), bytes([246])


def send(data, text=True):
    return bytes([190, 0 if text else 1]) + struct.pack(">H", len(data)) + data


def fragment(data, fin, text=True):
    return bytes([210, 0 if text else 1]) + struct.pack(">H", len(data)) + data + bytes([1 if fin else 0])


def ping(data):
    return bytes([220, len(data)]) + data


def close(code, reason=b""):
    return bytes([230, 16 + code - 1000, len(reason)]) + reason


# config flags: bits0-1 ping interval (0 none, 1 100ms, 2 1s, 3 zero),
# bits2-3 pong timeout (0 zero, 1 50ms, 2+ 2s), bits4-5 close timeout (0 zero, 1 50ms, 2+ 1s)
CFG = 0x2A  # ping 1s, pong 2s, close 1s
CFG_FAST = 0x15  # ping 100ms, pong 50ms, close 50ms


def conn(side, name, ops, cfg=CFG):
    head = bytes([cfg]) + (struct.pack(">Q", 6455) if side == "client" else b"")
    write(side + "_connection", name, head + ops)


for side in ("server", "client"):
    key = KEY if side == "server" else None
    conn(side, "rfc-5.7-hello-raw", raw(frame(1, b"Hello", key=key)))
    conn(side, "rfc-5.7-fragmented-with-ping",
         fr(TEXT, b"Hel", fin=False, split=1) + fr(PING, b"Hello") + fr(CONT, b"lo", split=0))
    conn(side, "peer-closes-1000", fr(BINARY, bytes(300)) + fr(CLOSE, b"bye", close_code=1000) + FIRE + EOF)
    conn(side, "we-close-then-peer-answers",
         send(b"hi") + close(1000, b"done") + fr(TEXT, b"late") + fr(CLOSE, close_code=1000) + FIRE)
    conn(side, "we-close-peer-silent", close(1001) + tick(500) + FIRE + FIRE, cfg=CFG_FAST)
    conn(side, "keepalive-ping-pong-then-dead",
         FIRE + fr(PONG, b"whatever") + tick(100) + FIRE + FIRE + FIRE, cfg=CFG_FAST)
    conn(side, "invalid-utf8-fails-fast",
         fr(TEXT, "κόσμε".encode(), fin=False) + fr(CONT, bytes([0xED, 0xA0, 0x80]) + b"edited"))
    conn(side, "message-too-big",
         b"".join(fr(BINARY if i == 0 else CONT, bytes(4000), fin=False, split=7) for i in range(5)))
    conn(side, "stalled-send-queue-full",
         STALL + b"".join(send(bytes(3000), text=False) for _ in range(5)) + ping(b"x") + STALL)
    conn(side, "fragmented-send-and-ping",
         fragment(b"ab", False) + ping(b"p") + fragment(b"cd", False) + send(b"no")
         + fragment(b"ef", True) + send(b"yes"))
    conn(side, "eof-mid-message", raw(frame(1, b"Hello wor", key=key)[:7]) + EOF + EOF)
    conn(side, "ping-flood-stalled", STALL + b"".join(fr(PING, b"pp") for _ in range(40)) + STALL)
    conn(side, "wrong-mask", fr(TEXT, b"Hello", wrong_mask=True))
    conn(side, "unexpected-continuation", fr(CONT, b"x") + send(b"after"))
    conn(side, "bad-close-payload", raw(frame(8, b"\x03", key=key)))


# --- server_handshake / client_response: [flags] [n] [n chunk sizes] [head bytes...]
# flags bits 0-1 max_handshake_bytes (128, 512, 2048, 8192), bits 2-3 max headers
# (1, 4, 16, 64); server bit 4: select the first offered protocol; client bits 4-5 the
# protocols offered ([], [chat], [chat, superchat], [superchat]), bit 6 fuzzed fields.
BIG = 3 | (3 << 2)  # 8192 bytes, 64 headers

RFC_1_3_REQUEST = (b"GET /chat HTTP/1.1\r\n"
                   b"Host: server.example.com\r\n"
                   b"Upgrade: websocket\r\n"
                   b"Connection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Origin: http://example.com\r\n"
                   b"Sec-WebSocket-Protocol: chat, superchat\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
RFC_1_3_RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\n"
                    b"Upgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    b"Sec-WebSocket-Protocol: chat\r\n\r\n")


def hs(target, name, flags, sizes, head):
    write(target, name, bytes([flags, len(sizes) - 1] + sizes) + head)


def sh(name, head, flags=BIG, sizes=(255,)):
    hs("server_handshake", name, flags, list(sizes), head)


sh("rfc-1.3-request", RFC_1_3_REQUEST)
sh("rfc-1.3-request-select-chat-chunked", RFC_1_3_REQUEST, BIG | 0x10, [7, 1, 30])
sh("rfc-1.3-request-with-frames", RFC_1_3_REQUEST + frame(1, b"Hello", key=KEY)
   + frame(9, b"", key=KEY) + frame(8, struct.pack(">H", 1000), key=KEY), BIG, [50, 3])
sh("bytewise-request", RFC_1_3_REQUEST, BIG, [0])
sh("post-405", RFC_1_3_REQUEST.replace(b"GET", b"POST", 1))
sh("http-1.0", RFC_1_3_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
sh("version-8-426", RFC_1_3_REQUEST.replace(b"Version: 13", b"Version: 8"))
sh("no-upgrade-426", RFC_1_3_REQUEST.replace(b"Upgrade: websocket\r\n", b""))
sh("short-key", RFC_1_3_REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="))
sh("two-hosts", RFC_1_3_REQUEST.replace(b"Host: server.example.com\r\n",
                                        b"Host: a.example\r\nHost: b.example\r\n"))
sh("head-too-large-128", RFC_1_3_REQUEST, 0 | (3 << 2), [10])
sh("too-many-headers", RFC_1_3_REQUEST, 3 | (1 << 2), [255])
sh("incomplete-times-out", RFC_1_3_REQUEST[:60])
sh("garbage-first-line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
sh("bare-lf-lines", RFC_1_3_REQUEST.replace(b"\r\n", b"\n"))
sh("with-body", RFC_1_3_REQUEST.replace(b"Version: 13\r\n", b"Version: 13\r\nContent-Length: 5\r\n") + b"hello")
sh("extensions-offer", RFC_1_3_REQUEST.replace(
    b"Version: 13\r\n", b"Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))


def cr(name, head, flags=BIG | (2 << 4), sizes=(255,), fields=None):
    prefix = b""
    if fields is not None:
        flags |= 0x40
        for f in fields:
            prefix += bytes([len(f)]) + f
    hs("client_response", name, flags, list(sizes), prefix + head)


cr("rfc-1.3-response", RFC_1_3_RESPONSE)
cr("rfc-1.3-response-chunked-with-frames", RFC_1_3_RESPONSE + frame(1, b"Hello")
   + frame(9, b"hi") + frame(8, struct.pack(">H", 1000)), sizes=[5, 0, 60])
cr("rfc-1.3-response-bytewise", RFC_1_3_RESPONSE, sizes=[0])
cr("no-protocol-offered", RFC_1_3_RESPONSE.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""), flags=BIG)
cr("protocol-not-offered", RFC_1_3_RESPONSE, flags=BIG | (3 << 4))
cr("wrong-accept", RFC_1_3_RESPONSE.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
cr("status-403", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
cr("status-200", b"HTTP/1.1 200 OK\r\n\r\n")
cr("extension-not-offered", RFC_1_3_RESPONSE.replace(
    b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
cr("head-too-large", RFC_1_3_RESPONSE, flags=0 | (3 << 2) | (2 << 4), sizes=[3])
cr("incomplete", RFC_1_3_RESPONSE[:40])
cr("not-http", b"SSH-2.0-OpenSSH_9.6\r\n")
cr("fuzzed-fields-injection", RFC_1_3_RESPONSE,
   fields=[b"evil.example\r\nX-Injected: 1", b"/a b\r\n\r\nGET /", b"null\n", b"X-Token\r\nX", b"v\r\n\r\n"])
cr("fuzzed-fields-plain", RFC_1_3_RESPONSE,
   fields=[b"example.com:8080", b"/chat?room=1", b"https://example.com", b"Authorization", b"Bearer abc"])


# --- envelope_decode: one WebSocket message's bytes (the worked examples of
# docs/PROTOCOL.md, a Sockeye-Resume header value, and a few broken ones).
IDS = bytes(range(0x00, 0x10)) + bytes(range(0xA0, 0xB0))
for name, data in [
    ("data-text", bytes([0x01, 0x01, 0x01, 0x00]) + b"hi"),
    ("data-binary-ack", bytes([0x01, 0x00, 0xAC, 0x02, 0x05, 0xDE, 0xAD])),
    ("void", bytes([0x01, 0x02, 0x07, 0x02])),
    ("ack", bytes([0x02, 0x80, 0x01])),
    ("welcome", bytes([0x03, 0x01]) + IDS + bytes([0x04, 0xAC, 0x02])),
    ("resume", bytes([0x04]) + IDS + bytes([0x09])),
    ("resume-header", b"BAABAgMEBQYHCAkKCwwNDg-goaKjpKWmp6ipqqusra6vCQ"),
    ("error", bytes([0x05, 0x00, 0x02]) + b"gap"),
    ("long-varint", bytes([0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])),
    ("trailing", bytes([0x02, 0x01, 0x00])),
    ("unknown-kind", bytes([0x09, 0x00])),
]:
    write("envelope_decode", name, data)

# --- session_ops: operation bytes (core/src/sim/session_ops.rs documents them). Each
# seed connects first (op 7) so the envelope paths are reached.
for i, ops in enumerate([
    bytes([7, 0, 0x0A, 5, 0x0A, 3, 0x08, 0x0B, 0x08]),
    bytes([7, 0, 0x0A, 40, 0x0A, 40, 0x0A, 40, 0x0A, 40, 0x0A, 40, 0x08, 0x09]),
    bytes([7, 0, 0x81, 0x01, 3, 0x02, 0x01, 0x08, 0x0C, 7, 1]),
    bytes([7, 0, 0x0A, 8, 0x0C, 0x08, 0x08, 0x08, 0x08, 0x08, 0x08, 7, 2]),
    bytes([7, 0, 0x00, 6, 0x05, 0, 0x02]) + b"xyz",
    bytes([7, 3, 0x83, 2, 0x84, 0x0A, 1, 0x08]),
]):
    write("session_ops", f"ops-{i}", ops)


# --- hub_ops: three bytes per operation, decoded by `Op::decode` in core/src/sim/hub.rs:
# [a % 16: 0-2 connect (a & 0x80: reliable), 3-4 disconnect, 5-7 join, 8 leave,
#  9-10 publish, 11 send, 12 push to user, 13 push to room (b even) or everyone,
#  14-15 clock step of b*2 + c%2 ms] [b: connection id % 12] [c: user % 6 or room % 6]
# Rooms 0-3 are valid, 4 is "" and 5 is too long; limits are `small_config()`.
def h_connect(conn, user, reliable=True): return bytes([0x80 if reliable else 0, conn, user])
def h_disconnect(conn): return bytes([3, conn, 0])
def h_join(conn, room): return bytes([5, conn, room])
def h_leave(conn, room): return bytes([8, conn, room])
def h_publish(conn, room): return bytes([9, conn, room])
def h_send(conn, to): return bytes([11, conn, to])
def h_push_user(to): return bytes([12, 0, to])
def h_push_room(room): return bytes([13, 0, room])
def h_push_everyone(): return bytes([13, 1, 0])
def h_advance(ms): return bytes([14, ms // 2, ms % 2])


write("hub_ops", "chat-in-a-room",
      h_connect(1, 1, False) + h_connect(2, 2) + h_join(1, 0) + h_join(2, 0) + h_publish(1, 0)
      + h_publish(2, 0) + h_leave(2, 0) + h_publish(2, 0) + h_disconnect(1))
write("hub_ops", "offline-mailbox-drained-on-connect",
      h_connect(1, 0) + h_send(1, 3) + h_push_user(3) + h_push_user(3) + h_advance(100)
      + h_connect(3, 3) + h_push_user(3))
write("hub_ops", "mailbox-overflow-and-expiry",
      h_push_user(4) * 4 + h_advance(510) + h_push_user(1) + h_push_user(2) + h_push_user(3)
      + h_push_user(5) + h_advance(200) + h_connect(7, 1) + h_advance(400))
write("hub_ops", "connection-and-room-limits",
      h_connect(1, 0) + h_connect(2, 0) + h_connect(3, 0) + h_connect(4, 0)
      + b"".join(h_connect(c, c % 6) for c in range(4, 12))
      + h_join(1, 4) + h_join(1, 5) + h_join(1, 0) + h_join(1, 1) + h_join(1, 2)
      + h_join(5, 0) + h_join(6, 0) + h_join(7, 0) + h_join(8, 0))
write("hub_ops", "one-user-many-connections",
      h_connect(1, 2) + h_connect(2, 2, False) + h_connect(3, 2) + h_push_user(2)
      + h_join(1, 1) + h_join(2, 1) + h_join(3, 1) + h_connect(4, 5) + h_join(4, 1)
      + h_disconnect(1) + h_leave(2, 1) + h_push_everyone() + h_push_room(1) + h_disconnect(3))
write("hub_ops", "unknown-connections",
      h_join(9, 0) + h_leave(9, 0) + h_publish(9, 0) + h_send(9, 1) + h_disconnect(9)
      + h_connect(9, 1) + h_connect(9, 2) + h_disconnect(9) + h_disconnect(9) + h_publish(9, 0))


# --- journal_replay: a journal file, records framed as [len u32 LE][crc32 u32 LE][body]
# (core/src/journal/codec.rs); zlib's crc32 is the same CRC-32.
import zlib


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(b):
    return varint(len(b)) + b


def rec(body):
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


SID = bytes([1] * 16)
TOKEN = bytes([2] * 16)
opened = rec(bytes([1]) + SID + TOKEN + field(b"alice") + varint(0) + varint(0))
sent = [rec(bytes([2]) + SID + varint(i) + bytes([1]) + field(b"m%d" % i)) for i in (1, 2, 3)]
acked = rec(bytes([3]) + SID + varint(1))
voided = rec(bytes([4]) + SID + varint(3))
delivered = rec(bytes([5]) + SID + varint(9))
closed = rec(bytes([6]) + SID)
mail = [rec(bytes([7]) + field(b"bob") + bytes([1]) + field(b"alice") + varint(1700000000000 + i)
            + field(b'{"n":%d}' % i)) for i in (1, 2)]
taken = rec(bytes([8]) + field(b"bob") + varint(1))
# A batch is applied only once its commit marker is read.
commit = rec(bytes([9]))
joined = rec(bytes([10]) + SID + field(b"lobby"))
left = rec(bytes([11]) + SID + field(b"lobby"))
for name, data in [
    ("session", opened + b"".join(sent) + commit + acked + voided + delivered + commit),
    ("session-closed", opened + sent[0] + commit + closed + commit),
    ("rooms", opened + joined + commit + left + joined + commit),
    ("mail", b"".join(mail) + commit + taken + commit),
    ("torn-tail", opened + sent[0] + commit + sent[1][:7]),
    ("uncommitted", opened + commit + sent[0] + sent[1]),
    ("bad-crc", opened[:-1] + bytes([opened[-1] ^ 1]) + sent[0] + commit),
    ("inconsistent", opened + sent[1] + commit),
]:
    write("journal_replay", name, data)


# --- server_ops: [journal flag] then (op, arg) pairs (server/src/sim/fuzz.rs); op 2 (raw
# bytes) takes a length and the bytes after its arg. arg: low nibble a connection, high
# nibble a canned request or command.
def op(code, conn=0, idx=0):
    return bytes([code, (idx << 4) | conn])


ACCEPT, REQ, RAW, EOF, CLOSED, TICK, COMMIT_OK, COMMIT_ERR, DRAIN, SHUTDOWN, CRASH, CMD = range(12)
plain_pair = op(ACCEPT) + op(ACCEPT) + op(REQ, 0, 0) + op(REQ, 1, 1) + op(DRAIN, 0) + op(DRAIN, 1)
for name, data in [
    ("plain-and-reliable", b"\x00" + plain_pair + op(CMD, 0, 0) + op(CMD, 0, 2) + op(CMD, 0, 4)
     + op(DRAIN, 0) + op(DRAIN, 1)),
    ("journal-commit-then-crash", b"\x01" + plain_pair + op(CMD, 0, 3) + op(ACCEPT) + op(REQ, 2, 2)
     + op(COMMIT_OK) + op(CMD, 0, 3) + op(CRASH, 5) + op(ACCEPT) + op(REQ, 0, 1) + op(DRAIN, 0)),
    ("failed-commit", b"\x01" + op(ACCEPT) + op(REQ, 0, 2) + op(COMMIT_ERR) + op(TICK, 0, 1)
     + op(COMMIT_OK) + op(DRAIN, 0)),
    ("timeouts", b"\x00" + plain_pair + op(TICK, 0, 3) + op(TICK, 0, 3) + op(TICK, 15, 15)
     + op(TICK, 15, 15) + op(DRAIN, 0)),
    ("shutdown", b"\x01" + plain_pair + op(CMD, 0, 0) + op(SHUTDOWN) + op(EOF, 0) + op(CLOSED, 1)
     + op(TICK, 0, 5) + op(COMMIT_OK)),
    ("raw-garbage", b"\x00" + op(ACCEPT) + bytes([RAW, 0, 8]) + b"GET / \x00\xff" + op(EOF, 0)),
]:
    write("server_ops", name, data)

# --- inflate: [flags] [limit index] [chunk size], then raw frames [b0] [len] ([len16]) [payload]
# or, with flags bit 7, a round trip: [level] [min_compress_bytes] then [op] [len16] [data].
# flags: bit0 we are the client; bit1 server_no_context_takeover; bit2
# client_no_context_takeover; bits3-5 the peer's window bits - 8. limit index: 0:0 1:1 2:100
# 3:4096 4:65536 5:1MiB. Compressed payloads are raw DEFLATE, sync-flushed, their
# 00 00 ff ff tail removed (RFC 7692 §7.2.1).
def pmd(comp, data):
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflater(wbits=15, level=6):
    return zlib.compressobj(level, zlib.DEFLATED, -wbits)


def inf_frame(b0, payload):
    n = len(payload)
    if n < 255:
        return bytes([b0, n]) + payload
    return bytes([b0, 255]) + struct.pack(">H", n) + payload


def inf(name, flags, limit, chunk, frames):
    write("inflate", name, bytes([flags, limit, chunk]) + b"".join(frames))


HELLO = bytes.fromhex("f248cdc9c90700")
inf("rfc-7.2.3.1-hello", 0, 5, 255, [inf_frame(0xC1, HELLO)])
inf("rfc-7.2.3.1-fragmented-client", 1, 5, 0, [inf_frame(0x41, HELLO[:3]), inf_frame(0x80, HELLO[3:])])
inf("rfc-7.2.3.2-shared-window", 0, 5, 3,
    [inf_frame(0xC1, HELLO), inf_frame(0xC1, bytes.fromhex("f200110000"))])
inf("rfc-7.2.3.3-stored-block", 0, 5, 255, [inf_frame(0xC1, bytes.fromhex("000500faff48656c6c6f00"))])
inf("rfc-7.2.3.4-bfinal-then-more", 0, 5, 2,
    [inf_frame(0xC1, bytes.fromhex("f348cdc9c9070000")), inf_frame(0xC1, HELLO)])
inf("rfc-7.2.3.5-two-blocks", 0, 5, 255,
    [inf_frame(0xC1, bytes.fromhex("f248050000 00ffffcac9c90700".replace(" ", "")))])
c = deflater()
chat = [b'{"room":"lobby","text":"hello %d, hello again"}' % i for i in range(4)]
inf("zlib-takeover-chat", 0, 4, 17, [inf_frame(0xC1, pmd(c, m)) for m in chat])
inf("zlib-no-takeover-9-bits", 4 | (1 << 3), 4, 255,
    [inf_frame(0xC1, pmd(deflater(9), m)) for m in chat])
c = deflater()
big = b"".join(chat) * 40
# A fragment before the last keeps its flush block whole: only the message's tail goes.
part = c.compress(big[:700]) + c.flush(zlib.Z_SYNC_FLUSH)
rest = pmd(c, big[700:])
inf("zlib-fragmented-with-ping", 1 | 2, 4, 64,
    [inf_frame(0x42, part), inf_frame(0x89, b"ping"), inf_frame(0x80, rest)])
inf("bomb-1009", 0, 3, 255, [inf_frame(0xC2, pmd(deflater(level=9), bytes(1 << 20)))])
inf("rsv1-continuation", 0, 5, 255, [inf_frame(0x41, HELLO[:3]), inf_frame(0xC0, HELLO[3:])])
inf("rsv1-ping", 0, 5, 255, [inf_frame(0xC9, b"")])
inf("bad-deflate-1007", 0, 5, 255, [inf_frame(0xC1, b"\xff\xff\xff")])
inf("invalid-utf8-1007", 0, 5, 255, [inf_frame(0xC1, pmd(deflater(), b"ok \xed\xa0\x80 no"))])


def rt(op, data):
    return bytes([op]) + struct.pack(">H", len(data)) + data


inf("round-trip-both-ways", 0x80, 5, 9,
    [bytes([6, 0]), rt(1 | 2, b"Hello Hello Hello"), rt(2, b"hi from the server " * 5),
     rt(1 | (3 << 3), bytes(range(256)) * 3), rt(4 | 2, b"a secret, never compressed")])
inf("round-trip-no-takeover", 0x80 | 2 | 4, 5, 255,
    [bytes([1, 64]), rt(1 | 2, b"short"), rt(2 | (2 << 3), b"longer text, longer text " * 9)])


# --- deflate_negotiation: [server policy] [client policy] [split], then a
# Sec-WebSocket-Extensions value (cut into two header lines at split*8).
# Policy bits: 0 off, 1 no peer takeover, 2 drop our compressor, 3-5 window 8+v,
# 6-7 min_compress_bytes index (0, 1, 64, 1000).
def neg(name, server, client, value, split=255):
    write("deflate_negotiation", name, bytes([server, client, split]) + value)


ON15 = 7 << 3  # on, takeover both ways, a 15-bit window, compress from 0 bytes
neg("plain-offer", ON15, ON15, b"permessage-deflate")
neg("browser-offer", ON15, ON15, b"permessage-deflate; client_max_window_bits")
neg("autobahn-13.3-offer", ON15, ON15,
    b"permessage-deflate; client_no_context_takeover; client_max_window_bits; "
    b"server_max_window_bits=9")
neg("window-8-and-resets", 2 | 4 | (2 << 3), 2 | 4 | (1 << 3),
    b"permessage-deflate; server_max_window_bits=8; server_no_context_takeover")
neg("python-answer", ON15, ON15,
    b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
neg("bad-then-good", ON15, ON15,
    b"permessage-deflate; foo, permessage-deflate; client_max_window_bits=10, x-webkit-deflate-frame")
neg("two-lines", ON15, ON15,
    b"x-other; a=\"b, c\"permessage-deflate; server_no_context_takeover", split=2)
neg("repeated-and-quoted", ON15 | (1 << 6), 2 | (4 << 3),
    b"permessage-deflate; server_max_window_bits=\"10\"; server_max_window_bits=10")
neg("off", 1, 1, b"permessage-deflate")
neg("client-asked-limit", ON15, 2 | (3 << 3),
    b"permessage-deflate; server_no_context_takeover; server_max_window_bits=11")
