"""One HTTP(S) GET of one url into a caller's file, on urllib3, politely: the download layer of
`lrlivae.fetch.download`.

`HttpClient.get(url, sink)` makes one attempt: it follows redirects itself (relative, absolute, to
other hosts; at most `max_redirects`; a url seen twice is a "redirect loop"), holds a host slot for each
request (`lrlivae.fetch.host_pool.HostLimiter`: at most `per_host` requests at a time to one host name,
every hop counted against its own host), streams the body (gzip / deflate content-encoding decoded)
into `sink` while hashing it, and stops at `max_bytes`, at `timeout` seconds without a byte (urllib3
`Timeout` for the connect and each read) or when the whole transfer takes over ATTEMPT_TIMEOUT_FACTOR x
timeout. Connections are pooled and kept alive (urllib3 `PoolManager`); with `env_proxy` the HTTP_PROXY /
HTTPS_PROXY / NO_PROXY environment (`lrlivae.fetch.proxy_env`) picks a `ProxyManager` per url.

Every problem raises `Failure(reason, retry)`; whether and when to try again is decided with urllib3's
`Retry` (`new_retry`, `next_retry`): transient failures (connection errors, timeouts, resets, bodies cut
short, HTTP 5xx, 408, 429) are retried with exponential backoff, or after a 429/503's Retry-After
(seconds or a date, capped at MAX_RETRY_AFTER); the rest are final. A host whose last `host_give_up`
connection attempts all failed is given up ("host unreachable") for the rest of the client's life.
"""
from __future__ import annotations

import hashlib
import http.client
import ssl
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urljoin

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError, DecodeError, HTTPError, LocationValueError, MaxRetryError, NameResolutionError,
    NewConnectionError, ProtocolError, ProxyError, ReadTimeoutError, SSLError,
)
from urllib3.util import Retry, Timeout, parse_url

from lrlivae.fetch.host_pool import HostLimiter
from lrlivae.fetch.proxy_env import proxy_for

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 60
ATTEMPT_TIMEOUT_FACTOR = 10
HOST_GIVE_UP = 8
CHUNK = 1 << 16
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_REDIRECTS = (301, 302, 303, 307, 308)
_NOT_IMAGE_TYPES = ("application/json", "application/xml", "application/xhtml+xml", "application/javascript")
_RETRY_AFTER = Retry(retry_after_max=MAX_RETRY_AFTER)


class Failure(Exception):
    """A failed attempt. retry: transient; status / retry_after: the HTTP status and its Retry-After."""

    def __init__(self, reason: str, retry: bool = False, status: int = 0, retry_after: float | None = None,
                 error: BaseException | None = None):
        super().__init__(reason)
        self.reason, self.retry, self.status, self.retry_after, self.error = reason, retry, status, retry_after, error


@dataclass
class Received:
    size: int       # bytes written to the sink (after content decoding)
    sha256: str     # of those bytes
    url: str        # the url the body came from (after redirects)
    hops: int = 0   # redirects followed


# ------------------------------------------------------------------------------------ retry policy
def new_retry(retries: int, backoff: float) -> Retry:
    """The retry budget of one url: `retries` more attempts; retry k waits backoff x 2^(k-1) s (urllib3's
    schedule plus up to 25 % jitter, but never less than `backoff`: urllib3 would retry the first time at
    once), or what a 429/503 asks in Retry-After if that is longer."""
    return Retry(total=retries, redirect=False, status_forcelist=TRANSIENT_STATUS, backoff_factor=backoff,
                 backoff_jitter=0.25 * backoff, backoff_max=MAX_RETRY_AFTER, retry_after_max=MAX_RETRY_AFTER,
                 raise_on_status=False, respect_retry_after_header=True, allowed_methods=frozenset({"GET"}))


def next_retry(retry: Retry, failure: Failure, url: str) -> tuple[Retry | None, float]:
    """(the retry state for the next attempt, seconds to wait first) or (None, 0) when `failure` is final
    or the budget is spent."""
    if not failure.retry:
        return None, 0.0
    try:
        if failure.status:
            if not retry.is_retry("GET", failure.status, failure.retry_after is not None):
                return None, 0.0
            retry = retry.increment("GET", url)  # a status retry; no response object is kept
        else:
            retry = retry.increment("GET", url, error=_as_retry_error(failure.error))
    except MaxRetryError:
        return None, 0.0
    wait = max(retry.get_backoff_time(), retry.backoff_factor)
    if failure.retry_after is not None:
        wait = max(wait, failure.retry_after)
    return retry, wait


def _as_retry_error(e: BaseException | None) -> Exception:
    # Retry.increment re-raises errors it does not retry on (read errors on non-idempotent methods...);
    # GET is idempotent, so any error counts; a plain Exception lands in its "other" bucket.
    return e if isinstance(e, HTTPError) else ProtocolError(str(e) if e else "failed")


# ------------------------------------------------------------------------------------ the client
class HttpClient:
    def __init__(self, *, per_host: int = 2, timeout: float = 10.0, max_bytes: int = 20_000_000,
                 user_agent: str = "lrlivae", env_proxy: bool = True, max_redirects: int = MAX_REDIRECTS,
                 host_give_up: int = HOST_GIVE_UP, stop: threading.Event | None = None, connections: int = 8):
        self.timeout, self.max_bytes, self.max_redirects = timeout, max_bytes, max_redirects
        self.host_give_up, self.stop = host_give_up, stop or threading.Event()
        self.limiter = HostLimiter(per_host)
        self.proxies = urllib.request.getproxies_environment() if env_proxy else {}
        self.bytes_received = 0  # all bodies, for rates
        self._headers = {"User-Agent": user_agent, "Accept": "image/*,*/*;q=0.5", "Accept-Encoding": "gzip, deflate"}
        self._pool_kw = dict(num_pools=256, maxsize=per_host, block=False, timeout=Timeout(connect=timeout, read=timeout))
        self._direct = urllib3.PoolManager(headers=self._headers, **self._pool_kw)
        self._proxy_kw = {**self._pool_kw, "maxsize": max(per_host, connections)}  # one pool per proxy
        self._via: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        self._refused: Counter = Counter()

    def close(self) -> None:
        for pool in (self._direct, *self._via.values()):
            pool.clear()

    def get(self, url: str, sink: BinaryIO) -> Received:
        """One attempt at `url` (with its redirects), the body written to `sink`. Raises Failure."""
        deadline = time.monotonic() + ATTEMPT_TIMEOUT_FACTOR * self.timeout
        seen = set()
        for hop in range(self.max_redirects + 1):
            if url in seen:
                raise Failure("redirect loop")
            seen.add(url)
            try:
                parts = parse_url(url)
            except LocationValueError:
                raise Failure("unsupported url") from None
            host = (parts.host or "").lower()
            if parts.scheme not in ("http", "https") or not host:
                raise Failure("unsupported url")
            if self.host_give_up and self._refused[host] >= self.host_give_up:
                raise Failure(f"host unreachable (gave up after {self.host_give_up} failed connections)")
            try:
                self.limiter.acquire(host, self.stop)
            except InterruptedError:
                raise Failure("interrupted") from None
            try:
                resp = self._request(url, host)
                try:
                    location = self._check(resp)
                    if location is None:
                        size, digest = self._stream(resp, sink, deadline)
                        return Received(size, digest, url, hop)
                finally:
                    resp.release_conn()
            finally:
                self.limiter.release(host)
            url = urljoin(url, location)
        raise Failure("too many redirects")

    def _pool(self, url: str) -> urllib3.PoolManager:
        proxy = proxy_for(url, self.proxies) if self.proxies else None
        if proxy is None:
            return self._direct
        with self._lock:
            if proxy not in self._via:
                p = parse_url(proxy)
                auth = urllib3.make_headers(proxy_basic_auth=unquote(p.auth)) if p.auth else None
                bare = f"{p.scheme}://{p.host}:{p.port or (443 if p.scheme == 'https' else 80)}"
                self._via[proxy] = urllib3.ProxyManager(bare, proxy_headers=auth, headers=self._headers, **self._proxy_kw)
            return self._via[proxy]

    def _request(self, url: str, host: str):
        try:
            resp = self._pool(url).urlopen("GET", url, redirect=False, retries=False, preload_content=False,
                                           decode_content=True)
        except (NewConnectionError, ConnectTimeoutError, NameResolutionError) as e:
            with self._lock:
                self._refused[host] += 1
            raise _network_failure(e) from None
        except (HTTPError, OSError, http.client.HTTPException) as e:
            raise _network_failure(e) from None
        except ValueError as e:  # a url http.client refuses (control characters ...)
            raise Failure(f"unsupported url ({_short(e)})") from None
        with self._lock:
            self._refused[host] = 0
        return resp

    def _check(self, resp) -> str | None:
        """The redirect target, None for a body to read; raises Failure for any other answer."""
        if resp.status in _REDIRECTS:
            location = resp.headers.get("Location", "").strip()
            _discard(resp)
            if not location:
                raise Failure(f"HTTP {resp.status} without Location")
            return location
        if resp.status != 200:
            after = resp.headers.get("Retry-After")
            wait = None
            if after is not None and resp.status in Retry.RETRY_AFTER_STATUS_CODES:
                try:
                    wait = _RETRY_AFTER.parse_retry_after(after)  # seconds or an HTTP date, capped
                except HTTPError:  # unparsable: ignored
                    wait = None
            _discard(resp)
            raise Failure(f"HTTP {resp.status}", retry=resp.status in TRANSIENT_STATUS, status=resp.status,
                          retry_after=wait)
        length = _content_length(resp)
        if length is not None and length > self.max_bytes:
            _discard(resp)
            raise Failure("too large (over max_bytes)")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype.startswith("text/") or ctype in _NOT_IMAGE_TYPES:
            _discard(resp)
            raise Failure(f"not an image (content type {ctype})")
        return None

    def _stream(self, resp, sink: BinaryIO, deadline: float) -> tuple[int, str]:
        h, size = hashlib.sha256(), 0
        try:
            while block := resp.read1(CHUNK, decode_content=True):  # what arrived, so deadlines hold
                size += len(block)
                with self._lock:
                    self.bytes_received += len(block)
                if size > self.max_bytes:
                    raise Failure("too large (over max_bytes)")
                if time.monotonic() > deadline:
                    raise Failure("timeout (transfer too slow)", retry=True)
                if self.stop.is_set():
                    raise Failure("interrupted")
                h.update(block)
                sink.write(block)
        except Failure:
            resp.close()
            raise
        except (HTTPError, OSError, http.client.HTTPException) as e:
            resp.close()
            raise _network_failure(e) from None
        except ValueError as e:  # a read on a connection closed under it
            resp.close()
            raise Failure(f"bad HTTP response ({_short(e)})", retry=True) from None
        return size, h.hexdigest()


def _discard(resp) -> None:
    """Free the connection: read a short body to keep the connection alive, else close it."""
    length = _content_length(resp)
    if length is not None and length <= CHUNK:
        resp.drain_conn()
    else:
        resp.close()


def _content_length(resp) -> int | None:
    length = resp.headers.get("Content-Length", "").strip()
    return int(length) if length.isascii() and length.isdigit() else None


def _network_failure(e: BaseException) -> Failure:
    """A transient Failure for a network error (a TLS certificate error or bad encoding is final)."""
    inner = e
    if isinstance(e, ProxyError):
        inner = e.original_error
        if not isinstance(inner, (SSLError, ssl.SSLError)):
            return Failure(f"proxy error: {_short(inner)}", retry=True, error=e)
    if isinstance(e, ProtocolError) and e.args and isinstance(e.args[-1], BaseException):
        inner = e.args[-1]
    text = str(inner)
    if isinstance(inner, (SSLError, ssl.SSLError)):
        if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(inner, ssl.SSLCertVerificationError):
            return Failure("TLS certificate error", error=e)
        return Failure("TLS error", retry=True, error=e)
    if isinstance(inner, DecodeError):
        return Failure("bad content encoding", error=e)
    if isinstance(inner, NameResolutionError):
        return Failure("cannot resolve host", retry=True, error=e)
    if isinstance(inner, NewConnectionError):  # (a subclass of ConnectTimeoutError)
        refused = "refused" in text.lower()
        return Failure("connection refused" if refused else "cannot connect", retry=True, error=e)
    for kind, reason in (
        (ConnectTimeoutError, "connect timeout"),
        ((ReadTimeoutError, TimeoutError), "timeout"),
        (http.client.IncompleteRead, "incomplete body"),
        (http.client.RemoteDisconnected, "server closed the connection"),
        (ConnectionRefusedError, "connection refused"),
        ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "connection reset"),
    ):
        if isinstance(inner, kind):
            return Failure(reason, retry=True, error=e)
    if isinstance(inner, LocationValueError):
        return Failure("unsupported url", error=e)
    if isinstance(inner, (ProtocolError, http.client.HTTPException)):
        return Failure("bad HTTP response", retry=True, error=e)
    return Failure(f"connection error ({type(inner).__name__})", retry=True, error=e)


def _short(e: BaseException, limit: int = 80) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
