"""Where a webhook may be sent: http(s) URLs whose every address is public.

An endpoint's URL is checked when an admin registers it, and its host is resolved again at each
delivery, which then connects to the address it checked (not to a second lookup's answer), so a
name that resolves to a private address later (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
RESOLVE_SECONDS = 2.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValueError):
    """A URL or an address webhooks may not be sent to; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (a name, or an address without brackets)
    port: int
    path: str  # with the query


def parse(url: str) -> Target:
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise Refused(f"Not a URL: {error}.") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("Only http:// and https:// URLs are allowed.")
    if not parts.hostname:
        raise Refused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise Refused("The URL may not carry credentials: authenticate with the signature.")
    if parts.fragment:
        raise Refused("The URL may not have a fragment.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default, path)


def is_public(address: IPAddress) -> bool:
    """Not private, loopback, link-local, multicast, reserved, unspecified or shared (nor an
    IPv6 form of one of them)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


async def resolve(target: Target, allow_private: bool) -> IPAddress:
    """The address to connect to: every address the host resolves to must be allowed (a name
    with one private address among public ones is refused), and the first is used."""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(target.host)]
    except ValueError:
        addresses = await _lookup(target.host, target.port)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise Refused(
                    f"{target.host} resolves to {address}, a private, loopback, link-local or "
                    "reserved address: webhooks go to public addresses only."
                )
    return addresses[0]


async def _lookup(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise Refused(f"{host} does not resolve.") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise Refused(f"{host} does not resolve.")
    return found
