"""rtp: a lightweight WebRTC forwarder that relays RTP to browsers without decoding.

Stands on its own: nothing here imports ``trio_core``.
"""
