"""relay.registry: one publisher per name, readers, CONFLICT / NOTFOUND / LIMIT."""

from __future__ import annotations

import pytest

from relay import PathRegistry, Refused, admit


def refused(fn: object, *args: object, **kw: object) -> tuple[str, str, str]:
    with pytest.raises(Refused) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value.status, info.value.message, info.value.name


def test_admit_is_the_rule_over_counts() -> None:
    admit("a", publish=True, published=False, readers=0, total=0)
    assert refused(admit, "a", publish=True, published=True, readers=0, total=1) == (
        "CONFLICT", "already publishing", "a")
    assert refused(admit, "a", publish=False, published=False, readers=0, total=0) == (
        "NOTFOUND", "no publisher for this resource found", "a")
    admit("a", publish=False, published=True, readers=1, total=2, max_readers=2)
    assert refused(admit, "a", publish=False, published=True, readers=2, total=3,
                   max_readers=2) == ("LIMIT", "too many subscribers", "a")
    # the total limit is checked first, for publishers and readers alike
    assert refused(admit, "b", publish=True, published=True, readers=0, total=5,
                   max_total=5) == ("LIMIT", "too many connections", "b")


def test_one_publisher_per_name_and_its_readers_go_with_it() -> None:
    reg: PathRegistry[str, str] = PathRegistry()
    reg.publish("a", "pub-a")
    assert refused(reg.publish, "a", "pub-a2")[0] == "CONFLICT"
    assert reg.get("a") == "pub-a" and reg.get("zz") is None
    assert refused(reg.add_reader, "zz", 1, "r")[0] == "NOTFOUND"
    reg.add_reader("a", 1, "r1")
    reg.add_reader("a", 2, "r2")
    with pytest.raises(ValueError):
        reg.add_reader("a", 1, "again")
    reg.publish("b", "pub-b")
    reg.add_reader("b", 3, "r3")
    assert reg.total == 5 and reg.names() == ["a", "b"]
    assert reg.readers_of("a") == ["r1", "r2"]
    assert reg.unpublish("a", "someone else") == []  # not the holder: nothing changes
    assert reg.unpublish("a", "pub-a") == ["r1", "r2"]
    assert reg.total == 2 and "a" not in reg.readers and reg.readers_of("a") == []
    reg.publish("a", "pub-a3")  # free again


def test_removing_readers_leaves_no_empty_entries() -> None:
    reg: PathRegistry[str, str] = PathRegistry()
    reg.publish("a", "p")
    reg.add_reader("a", 1, "r")
    assert reg.remove_reader("a", 2) is None and reg.remove_reader("x", 1) is None
    assert reg.remove_reader("a", 1) == "r"
    assert reg.readers == {} and reg.total == 1


def test_limits_and_refusals_register_nothing() -> None:
    reg: PathRegistry[str, str] = PathRegistry(max_total=3, max_readers=1)
    reg.publish("a", "p")
    reg.add_reader("a", 1, "r")
    assert refused(reg.add_reader, "a", 2, "r2")[:2] == ("LIMIT", "too many subscribers")
    reg.publish("b", "p2")
    assert refused(reg.publish, "c", "p3")[:2] == ("LIMIT", "too many connections")
    assert refused(reg.check, "a", publish=False, extra=5)[1] == "too many connections"
    assert reg.total == 3 and reg.names() == ["a", "b"]
