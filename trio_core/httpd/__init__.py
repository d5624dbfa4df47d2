"""trio-core's own HTTP/1.1 server: sans-IO connection, trio shell, ASGI bridge (issue 23)."""
