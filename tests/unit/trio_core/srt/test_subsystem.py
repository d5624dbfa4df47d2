"""trio_core.srt.subsystem: the srt placeholder resolves as Core's does."""

from __future__ import annotations

from trio_core.engine.placeholders import resolve_config
from trio_core.engine.process_config import ProcessConfig
from trio_core.srt.subsystem import passphrase_query_value, placeholder_template


def _process(address: str, section: str) -> ProcessConfig:
    io = [{"id": "io", "address": address}]
    other = [{"id": "o", "address": "-"}]
    return ProcessConfig.from_json({
        "id": "p1", "reference": "ref",
        "input": io if section == "input" else other,
        "output": io if section == "output" else other,
    })


def test_srt_placeholder_resolves_as_core_per_section() -> None:
    values = {"srt": placeholder_template("127.0.0.1", 6000)}
    got = resolve_config(_process("{srt,name=cam}", "input"), values).input[0].address
    assert got == ("srt://127.0.0.1:6000?mode=caller&transtype=live&latency=20000"
                   "&streamid=cam,mode:request")
    got = resolve_config(_process("{srt,name=$processid,latency=500000}", "output"),
                         values).output[0].address
    assert got == ("srt://127.0.0.1:6000?mode=caller&transtype=live&latency=500000"
                   "&streamid=p1,mode:publish")
    # Restreamer UI adds mode=request: not a template variable, ignored
    got = resolve_config(_process("{srt,name=cam.stream,mode=request}", "input"),
                         values).input[0].address
    assert got.endswith("&streamid=cam.stream,mode:request")


def test_srt_placeholder_with_token_passphrase_and_wildcard_hosts() -> None:
    t = placeholder_template("", 6001, token="tok", passphrase="pass phrase!")
    got = resolve_config(_process("{srt,name=x}", "output"), {"srt": t}).output[0].address
    assert got == ("srt://127.0.0.1:6001?mode=caller&transtype=live&latency=20000"
                   "&streamid=x,mode:publish,token:tok&passphrase=pass+phrase!")
    assert str(placeholder_template("::", 1)).startswith("srt://[::1]:1?")
    assert str(placeholder_template("10.0.0.5", 1)).startswith("srt://10.0.0.5:1?")
    # without a value the placeholder stays as written
    got = resolve_config(_process("{srt,name=x}", "input"), {}).input[0].address
    assert got == "{srt,name=x}"


def test_passphrase_spelling_that_every_ffmpeg_reads_the_same() -> None:
    """Spaces as ``+`` (FFmpeg 5.1 does not decode ``%20``), the rest verbatim, except what
    ends or changes FFmpeg's query value (``+``, ``&``, ``#``, ``%XX``)."""
    assert passphrase_query_value("correct horse battery") == "correct+horse+battery"
    assert passphrase_query_value("a&b+c#d") == "a%26b%2Bc%23d"
    assert passphrase_query_value("100% sure:%zz/%41") == "100%+sure:%zz/%2541"
    assert passphrase_query_value("ünïcode-._~!$'()*,;=") == "ünïcode-._~!$'()*,;="
