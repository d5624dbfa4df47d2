# trio-core: FFmpeg restreaming server with WebRTC (WHEP) playback of every process.
#
#   docker build -t trio-core .
#   docker run --rm -p 8080:8080 -p 8555:8555/udp \
#       -e CORE_WEBRTC_PUBLIC_IP=<IP the browsers reach this host at> \
#       -e CORE_API_AUTH_ENABLE=true -e CORE_API_AUTH_USERNAME=admin -e CORE_API_AUTH_PASSWORD=secret \
#       -v trio-core-db:/core/config -v trio-core-data:/core/data trio-core
#
# WebRTC media uses ONE UDP port (CORE_WEBRTC_UDP_MUX_PORT, published 1:1). Inside the
# container the server binds 0.0.0.0; the ICE candidate it announces is
# CORE_WEBRTC_PUBLIC_IP (and CORE_WEBRTC_NAT_1_TO_1_IPS, space-separated): without it a
# browser outside the container cannot reach the media port.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg libsrt1.5-openssl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY trio_core ./trio_core
COPY rtp ./rtp
COPY rtmp ./rtmp
COPY relay ./relay
COPY web ./web
# gcc only to build the C fan-out (rtp/_fanout.c), npm only to fetch hls.js (web/) for the
# HLS player; both removed again in the same layer
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev npm \
    && pip install --no-cache-dir . \
    && python -c "import rtp.fanout as f; assert f.NATIVE, 'C fan-out not built'" \
    && python -c "import importlib.resources as r; assert r.files('trio_core').joinpath('static', 'hls.min.js').is_file(), 'hls.js missing'" \
    && apt-get purge -y gcc libc6-dev npm && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* /src /root/.npm

WORKDIR /core
ENV CORE_API_ADDRESS=0.0.0.0:8080 \
    CORE_DB_DIR=/core/config \
    CORE_STORAGE_DISK_DIR=/core/data \
    CORE_FFMPEG_BINARY=/usr/bin/ffmpeg \
    CORE_WEBRTC_ENABLE=true \
    CORE_WEBRTC_BIND_ADDRESS=0.0.0.0 \
    CORE_WEBRTC_UDP_MUX_PORT=8555 \
    CORE_RTMP_ADDRESS=:1935 \
    CORE_RTMP_ADDRESS_TLS=:1936 \
    CORE_SRT_ADDRESS=:6000 \
    CORE_DEMO_ENABLE=false
# No demo process in production (it would burn CPU); for a try-out add -e CORE_DEMO_ENABLE=true:
# the demo is then created once, on a fresh db, and stays deleted once deleted.
VOLUME ["/core/config", "/core/data"]
# RTMP (1935/tcp, RTMPS 1936/tcp) and SRT (6000/udp) are off unless CORE_RTMP_ENABLE=true /
# CORE_SRT_ENABLE=true (set CORE_RTMP_TOKEN / CORE_SRT_TOKEN when publishing ports).
EXPOSE 8080/tcp 8555/udp 1935/tcp 1936/tcp 6000/udp

# Without auth the server refuses a public bind: set CORE_API_AUTH_* (recommended) or
# CORE_API_ALLOW_PUBLIC_BIND=true for a trusted network.
CMD ["trio-core"]
