"""trio-core: a datarhei-Core-style restreaming server on trio with WebRTC (WHEP) playback."""

__version__ = "0.1.0"
NAME = "trio-core"
