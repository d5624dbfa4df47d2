"""rtmp: a sans-IO RTMP implementation (handshake, chunk stream, AMF0, commands, FLV media).

No sockets, no trio: every class here consumes bytes and produces bytes/events, like h11.
Stands on its own: nothing here imports ``trio_core``. The trio shell lives in
:mod:`trio_core.rtmp`.
"""
