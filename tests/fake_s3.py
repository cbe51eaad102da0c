"""A local S3-compatible bucket (moto's server on 127.0.0.1) behind a proxy that injects faults.

IDC downloads go through ``s5cmd`` exactly as against the real bucket, with the endpoint
pointed at the proxy. The proxy forwards every request to moto and, for chosen object keys,
serves the next fault of a list instead: ``corrupt`` (one byte changed, same length),
``truncate`` (the connection drops half-way through the body) or ``missing`` (404
NoSuchKey). It counts GETs per key.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BUCKET = "idc-open-data"
HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length"}


@dataclass
class FaultyProxy:
    """Faults to inject (key -> faults, consumed one per GET) and GET counts per key."""

    upstream: str
    faults: dict[str, list[str]] = field(default_factory=dict)
    gets: Counter = field(default_factory=Counter)
    url: str = ""

    def fail(self, key: str, *faults: str) -> None:
        """Serve ``faults`` in turn for the next GETs of object ``key`` (``<uuid>/<name>``)."""
        self.faults[key] = list(faults)

    def object_gets(self, key: str) -> int:
        """GETs of one object so far."""
        return self.gets[key]


def _object_key(path: str) -> str | None:
    """``<uuid>/<name>`` from a path-style object request, None for a bucket request."""
    parts = urlsplit(path).path.lstrip("/").split("/", 1)
    if len(parts) == 2 and parts[0] == BUCKET and parts[1] and not urlsplit(path).query:
        return parts[1]
    return None


def start_proxy(state: FaultyProxy) -> ThreadingHTTPServer:
    """Start the proxy in a daemon thread on 127.0.0.1; fill ``state.url``."""
    upstream = urlsplit(state.upstream)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self, method: str) -> None:
            key = _object_key(self.path)
            fault = None
            if key is not None and method == "GET":
                state.gets[key] += 1
                pending = state.faults.get(key)
                fault = pending.pop(0) if pending else None
            if fault == "missing":
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
                    b"<Message>The specified key does not exist.</Message></Error>"
                )
                self.send_response(404)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["Host"] = upstream.netloc
            connection.request(method, self.path, body=payload, headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            if fault == "corrupt" and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "HEAD":
                return
            if fault == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_HEAD(self) -> None:
            self._forward("HEAD")

        def do_PUT(self) -> None:
            self._forward("PUT")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class LocalBucket:
    """moto's S3 server on 127.0.0.1 with the public bucket, and the faulty proxy before it."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.proxy = FaultyProxy(self.moto_url)
        self.httpd = start_proxy(self.proxy)
        self.reset()

    @property
    def endpoint(self) -> str:
        """The S3 endpoint to give s5cmd (the proxy)."""
        return self.proxy.url

    def client(self):
        """A boto3 client on moto (dummy credentials; it never leaves 127.0.0.1)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.moto_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
        )

    def reset(self) -> None:
        """Empty moto, recreate the public bucket, clear faults and counts."""
        import requests

        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10)
        self.client().create_bucket(Bucket=BUCKET)
        self.proxy.faults.clear()
        self.proxy.gets.clear()

    def put(self, key: str, body: bytes) -> None:
        """Publish one object, readable without signing in, as IDC's are."""
        self.client().put_object(Bucket=BUCKET, Key=key, Body=body, ACL="public-read")

    def delete(self, key: str) -> None:
        """Remove one object (IDC revised or withdrew it)."""
        self.client().delete_object(Bucket=BUCKET, Key=key)

    def stop(self) -> None:
        """Stop the proxy and moto."""
        self.httpd.shutdown()
        self.server.stop()
