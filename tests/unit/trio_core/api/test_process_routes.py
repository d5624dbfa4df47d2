"""trio_core.api.process_routes on a Supervisor without FFmpeg (the app's test client): Core's
answers for unknown processes, unknown commands and the list filters."""

from __future__ import annotations

import trio

from trio_core.api.process_routes import COMMANDS, FILTERS, process_blueprint
from trio_core.engine.supervisor import Supervisor
from trio_core.http.errors import install_error_handlers
from trio_core.web import App


async def test_unknown_processes_and_commands_and_an_empty_list() -> None:
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(ffmpeg="ffmpeg")
        await nursery.start(supervisor.run)
        app = App(__name__)
        install_error_handlers(app)
        app.register_blueprint(process_blueprint(supervisor))
        client = app.test_client()
        assert await (await client.get("/api/v3/process")).get_json() == []
        missing = await client.get("/api/v3/process/nope")
        assert missing.status_code == 404
        assert await missing.get_json() == {"code": 404, "message": "Unknown process ID",
                                            "details": ["unknown process"]}
        for command in ("explode", ""):
            resp = await client.put("/api/v3/process/nope/command", json={"command": command})
            assert resp.status_code == 400
        unknown = await client.put("/api/v3/process/nope/command", json={"command": "explode"})
        assert (await unknown.get_json())["details"] == [
            "Known commands are: " + ", ".join(("start", "stop", "reload", "restart"))]
        assert set(COMMANDS) == {"start", "stop", "reload", "restart"}
        for command in COMMANDS:  # known commands reach the supervisor: no such process
            resp = await client.put("/api/v3/process/nope/command", json={"command": command})
            assert (await resp.get_json())["message"] == "Command failed"
        assert FILTERS == ("config", "state", "report", "metadata")
        nursery.cancel_scope.cancel()
