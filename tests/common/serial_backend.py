"""A backend with a fixed capacity, for the least_time tests: it serves one request at a
time, each taking --ms milliseconds, and closes each connection (HTTP/1.0), so that a
request waits in the listen backlog while another is served.

Usage: serial_backend.py PORT MS ID
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(MS / 1000)
        body = ID.encode()
        self.send_response(200)
        self.send_header("X-Instance-ID", ID)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    # The listen backlog, set before the constructor listens: the requests that wait.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Readiness probes hang up before the answer is read; that is no fault of theirs.
        pass


PORT, MS, ID = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
Server(("127.0.0.1", PORT), Handler).serve_forever()
