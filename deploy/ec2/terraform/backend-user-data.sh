#!/bin/bash
# cloud-init user data of a demo backend: a small Python app as a systemd service that says
# which instance answered (like the seeds' FastAPI app), with /health and an /events stream.
# Replace it with your own application; edgeproxy only needs it on $BACKEND_PORT.
set -euxo pipefail

: "${BACKEND_ID:?}" "${BACKEND_PORT:?}"
install -d -m 0755 /opt/backend
cat >/opt/backend/app.py <<'PY'
import json, os, socket, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

ID = os.environ["BACKEND_ID"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Instance-ID", ID)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.send(200, '{"status": "ok"}')
        elif self.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("X-Instance-ID", ID)
            self.end_headers()
            for n in range(60):
                self.wfile.write(f"data: {ID} event {n}\n\n".encode())
                self.wfile.flush()
                time.sleep(1)
            self.close_connection = True
        else:
            self.send(200, json.dumps({"instance": ID, "host": socket.gethostname(),
                                       "client": self.headers.get("X-Real-IP")}))

ThreadingHTTPServer(("0.0.0.0", int(os.environ["BACKEND_PORT"])), Handler).serve_forever()
PY

cat >/etc/systemd/system/backend.service <<UNIT
[Unit]
Description=Demo backend $BACKEND_ID
After=network-online.target

[Service]
Environment=BACKEND_ID=$BACKEND_ID BACKEND_PORT=$BACKEND_PORT
ExecStart=/usr/bin/python3 /opt/backend/app.py
DynamicUser=yes
Restart=always

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now backend.service
