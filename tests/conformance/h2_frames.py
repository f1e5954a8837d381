#!/usr/bin/env python3
"""Raw HTTP/2 frames against an HTTPS listener, for tests/conformance/h2.rs.

Frames are built with hyperframe and hpack (the python-hyper parts under the h2 package), not
through a client state machine, so that the probe can send what a well-behaved client never
would. Each mode prints one JSON object of what the server did; judging it is the test's job.

    h2_frames.py PORT rapid-reset N       HEADERS then RST_STREAM, N times over one connection
    h2_frames.py PORT continuation BYTES  HEADERS without END_HEADERS, then CONTINUATION frames
    h2_frames.py PORT streams EXTRA       SETTINGS_MAX_CONCURRENT_STREAMS + EXTRA slow requests
"""

import json
import select
import socket
import ssl
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REFUSED_STREAM = 0x7


class Conn:
    def __init__(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2", "the listener offers no h2"
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.closed = False
        self.goaway = None
        self.server_settings = {}
        self.statuses = {}
        self.resets = {}
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def send(self, data):
        """Sends data; False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return False

    def request(self, stream_id, path, end_headers=True):
        block = self.encoder.encode(
            [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)]
        )
        flags = ["END_STREAM"] + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(stream_id, data=block, flags=flags).serialize()

    def read(self, wait):
        """Reads and records the frames that come within `wait` seconds of silence."""
        deadline = time.monotonic() + wait
        while not self.closed and time.monotonic() < deadline:
            self.read_available(max(0.0, deadline - time.monotonic()))

    def read_available(self, wait=0.0):
        if self.closed:
            return
        if not self.sock.pending():
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return
        self.buf += data
        self.parse()

    def parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.server_settings.update(frame.settings)
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(frame, HeadersFrame):
                headers = dict(self.decoder.decode(frame.data))
                status = headers.get(b":status", headers.get(":status"))
                self.statuses[frame.stream_id] = int(status)
            elif isinstance(frame, RstStreamFrame):
                self.resets[frame.stream_id] = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code

    def report(self, **extra):
        result = {
            "closed": self.closed,
            "goaway": self.goaway,
            "responses": len(self.statuses),
            "ok": sum(1 for s in self.statuses.values() if s == 200),
            "refused": sum(1 for c in self.resets.values() if c == REFUSED_STREAM),
        }
        result.update(extra)
        print(json.dumps(result))


def rapid_reset(port, n):
    conn = Conn(port)
    conn.read(0.3)
    batch = b""
    for i in range(n):
        stream_id = 1 + 2 * i
        batch += conn.request(stream_id, "/") + RstStreamFrame(stream_id, error_code=0x8).serialize()
        if i % 100 == 99:
            if not conn.send(batch):
                break
            batch = b""
            conn.read_available()
    conn.send(batch)
    conn.read(1.0)
    conn.report(sent=n)


def continuation(port, limit):
    conn = Conn(port)
    conn.read(0.3)
    conn.send(conn.request(1, "/", end_headers=False))
    # One literal header field without indexing, repeated: a header block that never ends.
    # (name length 7; value length 200 = 127 + 73, in the 7-bit prefix and one more byte).
    field = b"\x00\x07x-flood\x7f\x49" + b"a" * 200
    chunk = ContinuationFrame(1, data=field * 16).serialize()
    sent = 0
    while sent < limit and conn.send(chunk):
        sent += len(chunk)
        conn.read_available()
        if conn.closed or conn.goaway is not None:
            break
    conn.read(1.0)
    conn.report(sent=sent)


def streams(port, extra):
    conn = Conn(port)
    conn.read(0.3)
    limit = conn.server_settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS)
    assert limit, f"the server advertised no stream limit: {conn.server_settings}"
    frames = b"".join(conn.request(1 + 2 * i, "/slow?ms=500") for i in range(limit + extra))
    conn.send(frames)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(conn.statuses) + len(conn.resets) < limit + extra:
        conn.read_available(0.1)
        if conn.closed:
            break
    conn.report(limit=limit, sent=limit + extra)


def main():
    port, mode, arg = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    {"rapid-reset": rapid_reset, "continuation": continuation, "streams": streams}[mode](port, arg)


if __name__ == "__main__":
    main()
