"""WHIP ingest (issue 19): publishers over WebRTC feed Sources that viewers play over WHEP
and processes read as ``{whip,name=…}``."""
