"""WebRTC (WHEP) playback of processes: the hook, FFmpeg RTP legs, probe, routes, pages."""
