"""Which proxy the environment picks for a url: HTTP_PROXY / HTTPS_PROXY minus NO_PROXY, as curl reads them.

`proxy_for(url, urllib.request.getproxies_environment())` gives the proxy url or None (direct); the
environment's lower-case names win over upper-case ones (urllib's rule, and curl's). NO_PROXY entries:
"*", host names (matching themselves and their subdomains, with or without a leading "."), IP addresses
and CIDR ranges, each optionally with ":port".
"""
from __future__ import annotations

import ipaddress

from urllib3.util import parse_url


def proxy_for(url: str, proxies: dict[str, str]) -> str | None:
    """The proxy url for `url` from `proxies` (urllib.request.getproxies_environment's shape: scheme ->
    url, "no" -> the NO_PROXY list), or None for a direct connection."""
    parts = parse_url(url)
    proxy = proxies.get(parts.scheme or "")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme or "")
    if not proxy or no_proxy_matches(parts.host or "", port, proxies.get("no", "")):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def no_proxy_matches(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY (comma or space separated: "*", host names matching themselves and their
    subdomains with or without a leading ".", IP addresses and CIDR ranges, each optionally ":port")
    exempts `host`."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.strip().lower()
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.strip("[]")
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False
