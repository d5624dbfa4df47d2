"""Storage as in datarhei Core: memfs, the disk directory, their HTTP mounts, ``/api/v3/fs``,
the ``{memfs}``/``{diskfs}`` placeholders and the output cleanup rules (see docs/storage.md)."""
