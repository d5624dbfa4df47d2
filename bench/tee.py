"""RTP tee: FFmpeg -> tee -> the server's RTP input ports, recording send times.

Run as a separate process (``python -m bench.tee``) so the load generator's work never delays
the input. It binds one loopback socket per track (port 0) and prints
``{"video": port, "audio": port}`` on stdout; FFmpeg sends there. Each datagram is forwarded
at once to the target port of its track, and for RTP the payload key
(:func:`bench.viewer.payload_key`) and ``time.time()`` right after ``sendto`` are kept. On
SIGTERM/SIGINT or ``--seconds`` elapsed it writes the records (``<Qd`` pairs) to ``--out``
and exits. The latency join happens offline (``bench.report``).
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

from bench.viewer import payload_key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=int, required=True, help="target port for video")
    ap.add_argument("--audio", type=int, required=True, help="target port for audio")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=3600)
    args = ap.parse_args()

    socks = {}
    for kind in ("video", "audio"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks[kind] = s
    targets = {socks["video"].fileno(): (args.host, args.video),
               socks["audio"].fileno(): (args.host, args.audio)}  # fmt: skip
    by_fd = {s.fileno(): s for s in socks.values()}
    print(json.dumps({k: s.getsockname()[1] for k, s in socks.items()}), flush=True)

    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out = bytearray()
    forwarded = 0
    ep = select.epoll()
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    end = time.monotonic() + args.seconds
    out_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    while not stop and time.monotonic() < end:
        try:
            events = ep.poll(0.2)
        except InterruptedError:
            continue
        for fd, _ in events:
            s = by_fd[fd]
            while True:
                try:
                    data = s.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                try:
                    out_sock.sendto(data, targets[fd])
                except OSError:
                    pass  # nobody listening yet (ECONNREFUSED) or buffer full
                now = time.time()
                forwarded += 1
                if len(data) > 12 and not (192 <= data[1] <= 223):
                    out += struct.pack("<Qd", payload_key(data[12:]), now)
    with open(args.out, "wb") as f:
        f.write(out)
    print(json.dumps({"forwarded": forwarded}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
