# trio-core: FFmpeg restreaming server with WebRTC (WHEP) playback of every process.
#
#   docker build -t trio-core .
#   docker run -d --name trio-core -p 8080:8080 -p 8555:8555/udp \
#       -e CORE_WEBRTC_PUBLIC_IP=<IP the browsers reach this host at> \
#       -e CORE_API_AUTH_ENABLE=true -e CORE_API_AUTH_USERNAME=admin -e CORE_API_AUTH_PASSWORD=secret \
#       -v trio-core-db:/core/config -v trio-core-data:/core/data trio-core
#
# (podman: `podman build --format docker ...` keeps the HEALTHCHECK, the OCI format drops it.)
#
# WebRTC media uses ONE UDP port (CORE_WEBRTC_UDP_MUX_PORT, published 1:1). Inside the
# container the server binds 0.0.0.0; the ICE candidate it announces is
# CORE_WEBRTC_PUBLIC_IP (and CORE_WEBRTC_NAT_1_TO_1_IPS, space-separated): without it a
# browser outside the container cannot reach the media port.
#
# Two stages: `build` has gcc (the C fan-out rtp/_fanout.c) and npm (hls.js for the HLS
# player) and installs trio-core into the virtual environment /opt/trio-core; the image copies
# only that environment, minus imageio-ffmpeg (its bundled FFmpeg is never run here: the image
# runs Debian's FFmpeg 5.1, a version the Restreamer UI accepts, ^5.1 || ^6.1) and minus the
# environment's own pip/setuptools (the base image's pip remains).

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY web/package.json web/package-lock.json ./web/
COPY rtp ./rtp
COPY rtmp ./rtmp
COPY relay ./relay
COPY trio_core ./trio_core
RUN python -m venv /opt/trio-core \
    && /opt/trio-core/bin/pip install --no-cache-dir . \
    && /opt/trio-core/bin/python -m pip uninstall -y imageio-ffmpeg setuptools pip


FROM python:3.11-slim-bookworm

# Debian's FFmpeg links libGL/libSDL2 (ffplay, OpenGL filters), which pull Mesa's GPU drivers
# and LLVM (~160 MB) that a headless server never loads (they are dlopen'ed only for OpenGL
# output). dpkg leaves those files out (the packages stay installed, so apt stays consistent);
# delete /etc/dpkg/dpkg.cfg.d/trio-core-no-gpu-drivers before installing GPU support on top.
RUN printf '%s\n' \
        'path-exclude=/usr/lib/*/dri/*' \
        'path-exclude=/usr/lib/*/libLLVM-*.so*' \
        'path-exclude=/usr/lib/*/libz3.so*' \
        > /etc/dpkg/dpkg.cfg.d/trio-core-no-gpu-drivers \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg libsrt1.5-openssl \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && if ldd /usr/bin/ffmpeg | grep 'not found'; then exit 1; fi \
    && ffmpeg -hide_banner -version | head -n 1 \
    && ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=64x64:rate=5 -t 1 \
        -c:v libx264 -f null - \
    && groupadd --system --gid 1000 core \
    && useradd --system --uid 1000 --gid core --home-dir /core --no-create-home \
        --shell /usr/sbin/nologin core \
    && mkdir -p /core/config /core/data \
    && chown core:core /core/config /core/data

COPY --from=build /opt/trio-core /opt/trio-core
ENV PATH=/opt/trio-core/bin:$PATH

# The checks run the installed package, from a directory without any source tree (-B: the
# byte code pip compiled stays as it is).
WORKDIR /core
RUN python -B -c "import rtp, rtp.fanout as f; assert rtp.__file__.startswith('/opt/trio-core/'), rtp.__file__; assert f.NATIVE, 'C fan-out not built'" \
    && python -B -c "import importlib.resources as r, trio_core; assert trio_core.__file__.startswith('/opt/trio-core/'), trio_core.__file__; assert r.files('trio_core').joinpath('static', 'hls.min.js').is_file(), 'hls.js missing'" \
    && python -B -c "import importlib.util as u; assert u.find_spec('imageio_ffmpeg') is None, 'imageio-ffmpeg shipped'" \
    && PYTHONDONTWRITEBYTECODE=1 trio-core --version

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
# /core/config holds db.json, instance.json and the generated JWT secret (jwt-secret, 0600);
# /core/data the disk storage. Both belong to the user core (uid/gid 1000): chown bind mounts.
VOLUME ["/core/config", "/core/data"]
# RTMP (1935/tcp, RTMPS 1936/tcp) and SRT (6000/udp) are off unless CORE_RTMP_ENABLE=true /
# CORE_SRT_ENABLE=true (set CORE_RTMP_TOKEN / CORE_SRT_TOKEN when publishing ports).
EXPOSE 8080/tcp 8555/udp 1935/tcp 1936/tcp 6000/udp

USER core:core

# GET /api answers 200 without a token (the minimal about) whether auth is on or off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h, _, p = os.environ.get('CORE_API_ADDRESS', '0.0.0.0:8080').rpartition(':'); h = h.strip('[]'); h = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = f'[{h}]' if ':' in h else h; u.urlopen(f'http://{h}:{p}/api', timeout=4).read()"]

# Without auth the server refuses a public bind: set CORE_API_AUTH_* (recommended) or
# CORE_API_ALLOW_PUBLIC_BIND=true for a trusted network.
CMD ["trio-core"]
