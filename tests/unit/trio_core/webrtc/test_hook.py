"""trio_core.webrtc.hook: when a reconnect probes the inputs again, and the plan that follows
a re-probe of a video-only input on a Source opened for video and audio (issue 22 item 7)."""

from __future__ import annotations

from trio_core.ffmpeg.mediainfo import AudioStream, MediaInfo, VideoStream
from trio_core.webrtc.hook import needs_probe
from trio_core.webrtc.legs import build_rtp_outputs

VIDEO = VideoStream(0, 0, "h264", "Constrained Baseline", "yuv420p", 320, 240, 25.0,
                    b_frames=False, interlaced=False, frames_checked=48)
AUDIO = AudioStream(0, 1, "aac", 48000, 2)


def test_reprobe_until_the_probe_answers_then_only_after_a_run_failed_at_start() -> None:
    # the last probe did not answer: probe again, whatever the last run did
    assert needs_probe(None, last_run_started=False)
    assert needs_probe(None, last_run_started=True)
    # it answered and the last run got going (wrote its SDP): reuse the plan
    assert not needs_probe(MediaInfo(VIDEO, AUDIO), last_run_started=True)
    # it answered but the last run failed at start: the publisher may have changed
    assert needs_probe(MediaInfo(VIDEO, None), last_run_started=False)


def test_video_only_probe_on_a_source_opened_for_both_plans_only_a_video_leg() -> None:
    unprobed = build_rtp_outputs(None, video_port=5000, audio_port=5002, video_pt=96,
                                 audio_pt=111, force_transcode=False, sdp_path="/tmp/x.sdp")
    assert len(unprobed.outputs) == 2  # what FFmpeg refuses for a video-only input
    legs = build_rtp_outputs(MediaInfo(VIDEO, None), video_port=5000, audio_port=5002,
                             video_pt=96, audio_pt=111, force_transcode=False,
                             sdp_path="/tmp/x.sdp")
    assert [address for _, address in legs.outputs] == [
        "udp://127.0.0.1:5000?pkt_size=1200"]
    flat = legs.outputs[0][0]
    assert flat[:2] == ["-sdp_file", "/tmp/x.sdp"]
    assert "0:0" in flat and "copy" in flat and "libopus" not in flat
    assert legs.decisions[0] == "no audio in the inputs: video only"
    assert not any(d.startswith("audio") for d in legs.decisions)
