"""The RTMP server subsystem: the trio shell around the sans-IO :mod:`rtmp` package.

``server`` (listeners, connections), ``registry`` (channels, players, fan-out), ``paths``
(Core's path/token/placeholder rules), ``api`` (``GET /api/v3/rtmp``), ``subsystem``
(the server's seam).
"""
