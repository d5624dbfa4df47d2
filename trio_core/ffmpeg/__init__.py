"""The FFmpeg toolkit: everything that finds, starts, watches or reads FFmpeg.

* :mod:`.binary` — which FFmpeg to run (configured, PATH, imageio-ffmpeg) and its version check;
* :mod:`.child` — the one spawn path: every FFmpeg (and helper program) the server starts goes
  through :func:`.child.spawn` (parent-death signal, own process group, pid record);
* :mod:`.procfs` — process identity and run state from ``/proc``;
* :mod:`.streams` — the one parser of FFmpeg's ``Stream #N:M…`` lines;
* :mod:`.progress` — stderr of a running FFmpeg: progress, prelude, log lines;
* :mod:`.probe` — ``GET /api/v3/process/{id}/probe`` (Core's probe);
* :mod:`.mediainfo` — what the inputs of a process carry (the WebRTC legs decide from it);
* :mod:`.skills` and :mod:`.devices` — ``GET /api/v3/skills``.

The toolkit imports nothing of the engine or the API above it (pid records are handed to
:func:`.child.spawn` through the small :class:`.child.PidRecorder` protocol).
"""
