"""trio_core.webrtc.legs: an input that cannot be probed is transcoded, with optional maps."""

from __future__ import annotations

from trio_core.webrtc.legs import build_rtp_outputs


async def test_unprobeable_input_transcodes_both_with_optional_maps() -> None:
    legs = build_rtp_outputs(None, video_port=5000, audio_port=5002, video_pt=96, audio_pt=111,
                             force_transcode=False, sdp_path="/tmp/x.sdp")
    flat = [a for options, _ in legs.outputs for a in options]
    assert "0:v:0?" in flat and "0:a:0?" in flat and "libx264" in flat and "libopus" in flat
    assert flat[:2] == ["-sdp_file", "/tmp/x.sdp"]
