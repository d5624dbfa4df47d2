"""WebRTCHook: makes every process with ``webrtc.enabled`` watchable over WHEP.

For such a process, ``on_start`` (before FFmpeg is exec'd):

1. on the first attempt of a start, probes the inputs (which carry video, which audio,
   with what codec, B-frames, interlacing), then opens the process's :class:`~rtp.source.Source` **inside the
   process's own nursery** (``ctx.nursery``) — it binds one loopback UDP socket per track;
   on a reconnect it probes again when :func:`needs_probe` says so (see below);
2. appends one ``-f rtp`` output leg per track to the Source's ports (copy or transcode,
   see :mod:`trio_core.webrtc.legs`) and logs each decision in the process log; the
   decisions and the probe's findings also stay in the process state (``webrtc.decisions``,
   ``webrtc.input``), where FFmpeg's log lines cannot push them out;
3. starts a small task, also in the process nursery, that waits for FFmpeg's
   ``-sdp_file`` and teaches the Source the codec parameters.

A reconnect (``final=False``) keeps the Source and its viewers: the new FFmpeg sends to the
same ports and the Source hides the restart from the viewers.

Re-probing (:func:`needs_probe`): a plan made from a probe that did not answer (an RTMP/SRT
publisher not there yet, an encoder reconnecting after a server restart) is not kept — it
transcodes video *and* audio with optional maps, which FFmpeg refuses for a video-only or
audio-only input ("Output file does not contain any stream"). Before each reconnect the
inputs are probed again (bounded by ``probe_timeout``, cancelled with the process, through
:func:`~trio_core.ffmpeg.child.run_process`) until the probe answers, and the legs follow
what it found. A plan from a probe that answered is reused across reconnects, except after
a run that failed at start (FFmpeg wrote no SDP: the publisher may have changed its
streams, so stream maps or copy decisions may be stale); a re-probe that does not answer
keeps the last answered plan. The Source's tracks are fixed at the first probe (viewers keep
their sessions and SSRCs): a track the Source has no port for gets no leg, a port whose
track the input lacks gets none either. When the process stops for
good (stop, delete, update, failure without reconnect, server shutdown) the engine cancels
the process nursery, which closes the Source, every Peer and every socket.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

import trio

from rtp.errors import SdpError
from trio_core.engine.hooks import HookAbort, RunContext
from trio_core.engine.temp_dirs import make_owned_tempdir, remove_stale_tempdirs
from trio_core.ffmpeg.child import PidRecorder
from trio_core.ffmpeg.mediainfo import MediaInfo, probe_inputs
from trio_core.webrtc.legs import build_rtp_outputs

if TYPE_CHECKING:  # imported by rtp.forwarder.Forwarder's constructor (webrtc.enable)
    from rtp.forwarder import Forwarder
    from rtp.source import Source

__all__ = ["WebRTCHook", "needs_probe"]

STATE_KEY = "webrtc"
SDP_WAIT_SECONDS = 30.0
SDP_DIR_PREFIX = "trio-core-webrtc-"


class _Session:
    """Hook-private state of one start of one process (kept across reconnects)."""

    def __init__(self, source: Source, info: MediaInfo | None, sdp_path: str) -> None:
        self.source = source
        self.info = info
        self.sdp_path = sdp_path
        self.sdp_watch: trio.CancelScope | None = None
        #: how the legs were chosen (copy/transcode and why), shown in the process state
        self.decisions: list[str] = []
        #: whether the current (or last) FFmpeg run wrote its SDP, i.e. got past its start
        self.run_started = False


class WebRTCHook:
    """The supervisor hook of the WebRTC subsystem (see module docstring)."""

    def __init__(self, forwarder: Forwarder, ffmpeg: str, *, probe_timeout: float = 10.0,
                 pid_records: PidRecorder | None = None) -> None:
        self.forwarder = forwarder
        self.ffmpeg = ffmpeg
        self.probe_timeout = probe_timeout
        self.pid_records = pid_records
        remove_stale_tempdirs(SDP_DIR_PREFIX)  # left behind by crashed servers
        self._sdp_dir = make_owned_tempdir(SDP_DIR_PREFIX)

    def close(self) -> None:
        """Remove the directory of the SDP files (when the subsystem stops)."""
        shutil.rmtree(self._sdp_dir, ignore_errors=True)

    async def on_start(self, ctx: RunContext) -> None:
        cfg = ctx.config
        if not cfg.webrtc.enabled:
            return
        process = ctx.process
        session: _Session | None = ctx.state.get(STATE_KEY)
        if session is None or session.source.closed:
            if self.forwarder.port == 0:
                raise HookAbort("webrtc: the WebRTC subsystem is not running")
            info = await self._probe(ctx)
            kinds = _kinds(info)
            if "video" in kinds and len(cfg.webrtc.video_codecs) > 1:
                kinds = (*kinds, "video2")  # a second video leg in another codec
            if info is None:
                process.log("webrtc: inputs could not be probed; transcoding video and audio")
            try:
                source: Source = await ctx.nursery.start(
                    self.forwarder.open_source, process.id, kinds
                )
            except ValueError as exc:
                raise HookAbort(f"webrtc: {exc}") from None
            sdp_path = os.path.join(self._sdp_dir, f"{_safe(process.id)}.sdp")
            session = _Session(source, info, sdp_path)
            ctx.state[STATE_KEY] = session
            process.extra_state["webrtc"] = lambda: _state(session)
            process.log(
                "webrtc: source bound on 127.0.0.1 "
                + ", ".join(f"{k}={p}" for k, p in source.ports.items())
            )
        elif needs_probe(session.info, session.run_started):
            info = await self._probe(ctx)
            if info is not None:
                session.info = info
                process.log("webrtc: inputs probed again: " + _describe(info))
            elif session.info is None:
                process.log("webrtc: inputs still not probed; transcoding video and audio")
            else:
                process.log("webrtc: inputs not probed again; keeping the last plan")
        session.run_started = False
        legs = build_rtp_outputs(
            session.info,
            video_port=session.source.ports.get("video"),
            audio_port=session.source.ports.get("audio"),
            video_pt=cfg.webrtc.video_pt,
            audio_pt=cfg.webrtc.audio_pt,
            force_transcode=cfg.webrtc.force_transcode,
            sdp_path=session.sdp_path,
            video_codecs=cfg.webrtc.video_codecs,
            video2_port=session.source.ports.get("video2"),
        )
        if not legs.outputs:
            raise HookAbort("webrtc: the inputs have no track the WebRTC source was opened for"
                            if session.info is not None
                            else "webrtc: the inputs have neither video nor audio")
        session.decisions = list(legs.decisions)
        for line in legs.decisions:
            process.log(f"webrtc: {line}")
        for options, address in legs.outputs:
            ctx.add_output(options, address, io_id="webrtc")
        try:
            os.unlink(session.sdp_path)  # wait for this run's description, not the last one's
        except FileNotFoundError:
            pass
        if session.sdp_watch is not None:
            session.sdp_watch.cancel()
        session.sdp_watch = await ctx.nursery.start(self._watch_sdp, ctx, session)

    async def _probe(self, ctx: RunContext) -> MediaInfo | None:
        """Probe the current attempt's inputs (None when they do not answer in time)."""
        return await probe_inputs(self.ffmpeg, ctx.config.input, timeout=self.probe_timeout,
                                  record=self.pid_records,
                                  record_id=f"{ctx.process.id} (webrtc probe)")

    async def on_stop(self, ctx: RunContext, final: bool) -> None:
        session: _Session | None = ctx.state.get(STATE_KEY)
        if session is None:
            return
        if session.sdp_watch is not None:
            session.sdp_watch.cancel()
            session.sdp_watch = None
        if final:
            ctx.process.extra_state.pop("webrtc", None)
            try:
                os.unlink(session.sdp_path)
            except FileNotFoundError:
                pass
            # the Source lives in ctx.nursery, which the engine cancels right after this

    async def _watch_sdp(self, ctx: RunContext, session: _Session, *,
                         task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                         ) -> None:
        """Wait for FFmpeg's ``-sdp_file`` and hand it to the Source (then end)."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            with trio.move_on_after(SDP_WAIT_SECONDS):
                path = trio.Path(session.sdp_path)
                while not (await path.exists() and "m=" in await path.read_text()):
                    await trio.sleep(0.05)
                await trio.sleep(0.05)  # let FFmpeg finish writing the file
                session.run_started = True  # FFmpeg opened its inputs and outputs
                try:
                    session.source.set_sdp(await path.read_text())
                except (SdpError, ValueError) as exc:
                    ctx.process.log(f"webrtc: unusable SDP from FFmpeg: {exc}")
                    return
                ctx.process.log("webrtc: live: " + ", ".join(
                    f"{k} {t.codec.rtpmap()}" for k, t in session.source.tracks.items()))
                return
            ctx.process.log("webrtc: FFmpeg wrote no SDP yet; viewers wait for it")


def needs_probe(info: MediaInfo | None, last_run_started: bool) -> bool:
    """Whether a reconnect probes the inputs again (pure; see the module docstring).

    ``info`` is the probe result the plan was made from (None: the probe did not answer),
    ``last_run_started`` whether the previous FFmpeg run got past its start (wrote its SDP).
    """
    return info is None or not last_run_started


def _describe(info: MediaInfo) -> str:
    parts = []
    if info.video is not None:
        parts.append(f"video {info.video.codec}")
    if info.audio is not None:
        parts.append(f"audio {info.audio.codec}")
    return ", ".join(parts)


def _kinds(info: MediaInfo | None) -> tuple[str, ...]:
    if info is None:
        return ("video", "audio")
    kinds = tuple(k for k, s in (("video", info.video), ("audio", info.audio)) if s is not None)
    return kinds or ("video", "audio")


def _safe(process_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in process_id)[:100]


def _input_summary(info: MediaInfo | None) -> dict[str, Any] | None:
    """What the probe found (None when the inputs could not be probed)."""
    if info is None:
        return None
    video = info.video
    audio = info.audio
    return {
        "video": None if video is None else {
            "codec": video.codec, "profile": video.profile, "pix_fmt": video.pix_fmt,
            "b_frames": video.b_frames, "interlaced": video.interlaced,
            "frames_checked": video.frames_checked,
        },
        "audio": None if audio is None else {
            "codec": audio.codec, "sample_rate": audio.sample_rate, "channels": audio.channels,
        },
    }


def _state(session: _Session) -> dict[str, Any]:
    source = session.source
    return {
        "live": source.ready and not source.closed,
        "tracks": {k: t.codec.rtpmap() for k, t in source.tracks.items()},
        "decisions": list(session.decisions),
        "input": _input_summary(session.info),
        "source": source.stats(),
        "viewers": [peer.stats() for peer in source.peers.values()],
        "closed_viewers": source.closed_viewers(),
    }

