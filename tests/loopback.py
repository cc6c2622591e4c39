"""HTTP servers for the download tests, on loopback addresses only (127.0.0.1, 127.0.0.2, ...): an
image server with scripted routes that counts hits, connections and concurrent requests, and a
forward proxy (absolute-URI GETs and CONNECT tunnels) that counts what it relays."""
from __future__ import annotations

import http.client
import select
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self):
        srv = self.server
        path = self.path.split("?")[0]
        with srv.lock:
            srv.hits[path] = srv.hits.get(path, 0) + 1
            srv.raw_paths.append(self.path)
            n = srv.hits[path]
            srv.active[path] = srv.active.get(path, 0) + 1
            srv.max_active[path] = max(srv.max_active.get(path, 0), srv.active[path])
            srv.active_all += 1
            srv.max_active_all = max(srv.max_active_all, srv.active_all)
        self._active_path, self._counted = path, True
        try:
            route = srv.routes.get(path)
            if route is None:
                self.reply(404, b"<html>not found</html>", "text/html")
            else:
                route(self, n)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            self._finished()
            if srv.close_after_response:  # drop the kept-alive connection without saying so
                self.close_connection = True

    def _finished(self) -> None:
        """The request no longer counts as in progress: called before the last bytes go out, so that a client
        that starts its next request the moment it has this response never sees it counted twice."""
        if getattr(self, "_counted", False):
            self._counted = False
            with self.server.lock:
                self.server.active[self._active_path] -= 1
                self.server.active_all -= 1

    def reply(self, code: int, body: bytes = b"", ctype: str = "image/jpeg", headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if not self.server.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._finished()
        self.end_headers()
        self.wfile.write(body)

    def partial_then_reset(self, body: bytes):
        """Promise the whole body, send half of it, then reset the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        super().__init__((host, 0), Handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.routes: dict = {}
        self.hits: dict[str, int] = {}
        self.raw_paths: list[str] = []
        self.active: dict[str, int] = {}  # requests in progress per path
        self.max_active: dict[str, int] = {}
        self.active_all = self.max_active_all = 0
        self.connections = 0
        self.keep_alive = False
        self.close_after_response = False
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.server_address[0]}:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address):  # resets and timeouts are what the tests do
        pass

    def start(self) -> "Server":
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


# ------------------------------------------------------------------------------------------ proxy
class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _count(self):
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
            self.server.auth.append(self.headers.get("Proxy-Authorization", ""))

    def do_GET(self):
        """Relay an absolute-URI GET (a plain-http target) and its answer."""
        self._count()
        parts = urlsplit(self.path)
        if not parts.scheme or not parts.hostname:
            self.send_error(400, "proxy needs an absolute URI")
            return
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers={k: v for k, v in self.headers.items()
                                                  if k.lower() not in ("proxy-authorization", "proxy-connection")})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.send_error(502, "upstream failed")
            return
        finally:
            conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self):
        """Tunnel to host:port (an https target)."""
        self._count()
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.send_error(502, "cannot connect")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 5)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__((host, 0), _ProxyHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, target) of every request relayed
        self.auth: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass

    def start(self) -> "Proxy":
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def self_signed_tls(tmp_path) -> tuple[ssl.SSLContext, str]:
    """(a server TLS context for 127.0.0.1, the path of its certificate as a CA file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lrlivae test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, str(cert_path)
