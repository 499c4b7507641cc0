#!/usr/bin/env python3
"""A DNS server and a TLS front on loopback, for checking how a static `atlas` binary
resolves names and verifies certificates when no libc of the build machine is around
(scripts/check-static.sh runs the binary in a chroot laid out like the container image).

- DNS (UDP): answers A queries for the names given with --name NAME=IPV4, an empty
  answer for other types of those names (AAAA), NXDOMAIN for everything else. Enough for
  glibc's resolver, which is what a static binary's getaddrinfo uses.
- TLS front: accepts TLS with --cert/--key and pipes the bytes to --upstream HOST:PORT
  (the plain-HTTP S3 test server), so the client sees a real certificate chain.

Prints one line, "ready", on stdout when both listen; runs until killed.
Standard library only.
"""

import argparse
import asyncio
import socket
import ssl
import struct
import sys


def dns_answer(query: bytes, names: dict) -> bytes | None:
    if len(query) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(query):
            return None
        length = query[pos]
        pos += 1
        if length == 0:
            break
        labels.append(query[pos : pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(query):
        return None
    qtype, _qclass = struct.unpack("!HH", query[pos : pos + 4])
    question = query[12 : pos + 4]
    name = ".".join(labels).lower().rstrip(".")
    if name not in names:
        # Response, authoritative, recursion desired/available, NXDOMAIN.
        return struct.pack("!HHHHHH", ident, 0x8583, 1, 0, 0, 0) + question
    if qtype != 1:
        return struct.pack("!HHHHHH", ident, 0x8580, 1, 0, 0, 0) + question
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(names[name])
    return struct.pack("!HHHHHH", ident, 0x8580, 1, 1, 0, 0) + question + answer


class Dns(asyncio.DatagramProtocol):
    def __init__(self, names):
        self.names = names
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = dns_answer(data, self.names)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dns", required=True, help="IP:PORT to answer DNS on")
    parser.add_argument("--name", action="append", default=[], help="NAME=IPV4")
    parser.add_argument("--tls", required=True, help="IP:PORT to accept TLS on")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plain server")
    args = parser.parse_args()

    names = {}
    for item in args.name:
        name, ip = item.split("=", 1)
        names[name.lower().rstrip(".")] = ip
    loop = asyncio.get_running_loop()
    dns_host, dns_port = args.dns.rsplit(":", 1)
    await loop.create_datagram_endpoint(lambda: Dns(names), local_addr=(dns_host, int(dns_port)))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    up_host, up_port = args.upstream.rsplit(":", 1)

    async def front(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    tls_host, tls_port = args.tls.rsplit(":", 1)
    server = await asyncio.start_server(front, tls_host, int(tls_port), ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
