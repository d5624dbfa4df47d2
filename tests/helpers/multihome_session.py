"""A viewer of a mux bound to all interfaces on a host with several addresses.

Run by ``tests/interop/test_multihome.py`` as ``unshare -n python -m tests.helpers.multihome_session``:
inside a private network namespace it gives one interface two IPv4 and two IPv6 addresses
(the client has a third of each on the veth peer), runs a Forwarder bound to ``0.0.0.0``
and then to ``::`` with a synthetic H264 source, and for each server address connects a
viewer whose UDP socket is ``connect()``-ed to that address — like Firefox, it then accepts
nothing from any other source address. The viewer does ICE, DTLS and receives SRTP
media, noting the source address of every datagram. One JSON line is printed per run.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from typing import Any

import trio

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.errors import ParseError
from rtp.forwarder import Forwarder
from rtp.packet import build_rtp
from rtp.srtp import SrtpSession
from rtp.stun import build_binding_request, check_binding_response

SERVER_V4 = ["10.201.0.1", "10.201.0.2"]
CLIENT_V4 = "10.201.0.9"
SERVER_V6 = ["fd00:201::1", "fd00:201::2"]
CLIENT_V6 = "fd00:201::9"
VIDEO_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,"
    "aMuMsg==; profile-level-id=42C01E\r\n"
)


def network_up() -> None:
    cmds = ["ip link set lo up", "ip link add va type veth peer name vb"]
    cmds += [f"ip addr add {ip}/24 dev va" for ip in SERVER_V4]
    cmds += [f"ip addr add {CLIENT_V4}/24 dev vb"]
    cmds += [f"ip -6 addr add {ip}/64 dev va nodad" for ip in SERVER_V6]
    cmds += [f"ip -6 addr add {CLIENT_V6}/64 dev vb nodad"]
    cmds += ["ip link set va up", "ip link set vb up"]
    for cmd in cmds:
        subprocess.run(cmd.split(), check=True)


def offer(cert: Certificate, ufrag: str, pwd: str, host: str, port: int) -> str:
    ipv = "IP6" if ":" in host else "IP4"
    return (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        f"m=video {port} UDP/TLS/RTP/SAVPF 102\r\nc=IN {ipv} {host}\r\na=mid:0\r\n"
        f"a=recvonly\r\na=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"
        f"a=fingerprint:sha-256 {cert.fingerprint}\r\na=setup:actpass\r\n"
        "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n"
        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
    )


async def produce(fwd: Forwarder) -> None:
    source = fwd.source("cam")
    for i in range(100000):
        nal = 0x65 if i % 25 == 0 else 0x41
        pkt = build_rtp(96, i, i * 3600, 0xABC, bytes([nal]) + bytes(400), marker=True)
        source.on_datagram("video", pkt, trio.current_time())
        await trio.sleep(0.02)


async def view(fwd: Forwarder, client_ip: str, server_ip: str) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in client_ip else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    result: dict[str, Any] = {"server": server_ip, "stun": None, "dtls": False, "media": 0,
                              "sources": [], "error": None}
    with sock:
        await sock.bind((client_ip, 0))
        await sock.connect((server_ip, fwd.port))  # accepts datagrams from there only
        cert = Certificate.generate()
        ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
        _, answer = await fwd.add_peer("cam", offer(cert, ufrag, pwd, client_ip,
                                                    sock.getsockname()[1]))
        lines = answer.sdp.splitlines()
        r_ufrag = next(x[12:] for x in lines if x.startswith("a=ice-ufrag:"))
        r_pwd = next(x[10:] for x in lines if x.startswith("a=ice-pwd:"))
        r_fp = next(x.split(None, 1)[1] for x in lines if x.startswith("a=fingerprint:"))
        sources: set[str] = set()

        async def receive() -> bytes:
            data, addr = await sock.recvfrom(4096)
            sources.add(addr[0])
            return data

        try:
            with trio.fail_after(5):
                tid = secrets.token_bytes(12)
                await sock.send(build_binding_request(ufrag, r_ufrag, r_pwd, transaction_id=tid))
                result["stun"] = list(check_binding_response(await receive(), tid, r_pwd))
                dtls = DtlsEndpoint(cert, r_fp, "client")
                dtls.start(trio.current_time())
                while not dtls.handshake_complete:
                    for d in dtls.datagrams_to_send():
                        await sock.send(d)
                    data = await receive()
                    if 20 <= data[0] <= 63:
                        dtls.receive(data, trio.current_time())
                for d in dtls.datagrams_to_send():
                    await sock.send(d)
                result["dtls"] = True
                srtp = SrtpSession(dtls.srtp_keys())
                while result["media"] < 10:
                    data = await receive()
                    if 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                        try:
                            srtp.unprotect(data)
                            result["media"] += 1
                        except ParseError:
                            pass
        except Exception as exc:  # noqa: BLE001 - reported, the test asserts on it
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["sources"] = sorted(sources)
    return result


async def run(bind: str, client_ip: str, servers: list[str]) -> dict[str, Any]:
    fwd = Forwarder(host=bind, advertise=servers)
    out: dict[str, Any] = {"bind": bind}
    async with trio.open_nursery() as nursery:
        await nursery.start(fwd.run)
        out["mux_addresses"] = sorted(ip for ip, _ in fwd.mux.addresses)
        await nursery.start(fwd.open_source, "cam", ("video",))
        fwd.source("cam").set_sdp(VIDEO_SDP)
        nursery.start_soon(produce, fwd)
        out["viewers"] = [await view(fwd, client_ip, ip) for ip in servers]
        nursery.cancel_scope.cancel()
    return out


def main() -> None:
    network_up()
    results = [trio.run(run, "0.0.0.0", CLIENT_V4, SERVER_V4),
               trio.run(run, "::", CLIENT_V6, SERVER_V6)]
    print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
