"""Observability: session accounting, metrics history, Prometheus ``/metrics``, OpenAPI.

See ``docs/observability.md``. The subsystem (:mod:`.subsystem`) wires it into the server;
servers (RTMP, SRT, HLS mounts, WebRTC) account their viewers through
:class:`~.sessions.SessionRegistry` collectors.
"""
