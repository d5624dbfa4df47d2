"""trio_core.ffmpeg.skills / skills_devices: FFmpeg's tables (older versions too) and device lists parsed."""

from __future__ import annotations


def test_skills_parsers_read_older_ffmpeg_tables() -> None:
    """FFmpeg 4-6 table layouts (three filter flags, two format columns), as Core parses."""
    from trio_core.ffmpeg import skills as sk

    assert sk.parse_version("ffmpeg version 4.4.1 Copyright")["version"] == "4.4.1"
    assert sk.parse_version("ffmpeg version 5.1 Copyright")["version"] == "5.1.0"
    assert sk.parse_version("ffmpeg version n7.0.2-3-gabc Copyright")["version"] == "7.0.2"
    filters = sk.parse_filters(" T.. = Timeline support\n ... abench            A->A       "
                               "Benchmark part of a filtergraph.\n")
    assert filters == [{"id": "abench", "name": "Benchmark part of a filtergraph."}]
    formats = sk.parse_formats(" D. = Demuxing\n --\n DE flv             FLV (Flash Video)\n"
                               "  E mp4             MP4 (MPEG-4 Part 14)\n")
    assert formats == {"demuxers": [{"id": "flv", "name": "FLV (Flash Video)"}],
                       "muxers": [{"id": "flv", "name": "FLV (Flash Video)"},
                                  {"id": "mp4", "name": "MP4 (MPEG-4 Part 14)"}]}
    codecs = sk.parse_codecs(" DEV.LS h264   H.264 / AVC (decoders: h264 h264_v4l2m2m ) "
                             "(encoders: libx264 h264_nvenc )\n D.A.L. aac_latm  AAC LATM\n")
    assert codecs["video"] == [{"id": "h264", "name": "H.264 / AVC",
                                "decoders": ["h264", "h264_v4l2m2m"],
                                "encoders": ["libx264", "h264_nvenc"]}]
    assert codecs["audio"][0]["encoders"] is None and codecs["audio"][0]["decoders"] == ["aac_latm"]
    assert sk.parse_hwaccels("Hardware acceleration methods:\nvaapi\n\n") == [
        {"id": "vaapi", "name": "vaapi"}]
    assert sk.parse_protocols("Supported file protocols:\nInput:\n  file\nOutput:\n  rtmp\n") == {
        "input": [{"id": "file", "name": "file"}], "output": [{"id": "rtmp", "name": "rtmp"}]}


def test_skills_device_parsers() -> None:
    """Hardware inside devices[] (Core's formats: ALSA, v4l2-ctl, fbset)."""
    from trio_core.ffmpeg import devices as dev
    from trio_core.ffmpeg import skills as sk

    cards = (" 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n"
             "                      bcm2835 Headphones\n"
             " 1 [Device         ]: USB-Audio - USB PnP Sound Device\n")
    devices = ("  0: [ 0]   : control\n 16: [ 0- 0]: digital audio playback\n"
               " 32: [ 1- 0]: digital audio capture\n 33:        : timer\n")
    assert dev.parse_alsa(cards, devices) == [
        {"id": "hw:1,0", "name": "USB-Audio - USB PnP Sound Device", "extra": "",
         "media": "audio"}]
    v4l = ("mmal service 16.1 (platform:bcm2835-v4l2):\n\t/dev/video0\n\n"
           "USB Camera (usb-0000:01:00.0-1.4):\n\t/dev/video1\n\t/dev/video2\n")
    assert [d["id"] for d in dev.parse_v4l2(v4l)] == ["/dev/video0", "/dev/video1",
                                                       "/dev/video2"]
    assert dev.parse_v4l2(v4l)[0] == {"id": "/dev/video0", "name": "mmal service 16.1",
                                      "extra": "platform:bcm2835-v4l2", "media": "video"}
    fbset = ('mode "1920x1080"\n    geometry 1920 1080 1920 1080 32\n'
             "    rgba 8/16,8/8,8/0,8/24\nendmode\n")
    assert dev.parse_fbset(fbset) == "1920x1080 bgra"
    assert dev.parse_fbset("") == ""
    table = " D. = Demuxing\n --\n D  alsa            ALSA audio input\n DE fbdev   Linux fb\n"
    parsed = sk.parse_devices(table, lambda fmt: [{"id": f"{fmt}0", "name": "x", "extra": "",
                                                   "media": "video"}])
    assert parsed["demuxers"][0]["devices"][0]["id"] == "alsa0"
    assert parsed["muxers"] == [{"id": "fbdev", "name": "Linux fb", "devices": [
        {"id": "fbdev0", "name": "x", "extra": "", "media": "video"}]}]
