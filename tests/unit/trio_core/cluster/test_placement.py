"""Rendezvous placement with bounded loads (trio_core/cluster/placement.py)."""

from __future__ import annotations

from collections import Counter

from trio_core.cluster.node import process_dependencies
from trio_core.cluster.placement import assign, dependency_roots, rank, score


def test_score_is_stable_and_rank_orders_by_it() -> None:
    assert score("p1", "n1") == score("p1", "n1")
    assert score("p1", "n1") != score("p1", "n2")
    nodes = ["n1", "n2", "n3"]
    ranked = rank("p1", nodes)
    assert sorted(ranked) == nodes
    assert [score("p1", n) for n in ranked] == sorted((score("p1", n) for n in nodes), reverse=True)


def test_thirty_processes_spread_within_two_to_one() -> None:
    for prefix in ("p", "cam-", "x"):
        placed = assign([f"{prefix}{i}" for i in range(30)], {"n1": 0, "n2": 0, "n3": 0})
        load = Counter(placed.values())
        assert set(load) == {"n1", "n2", "n3"}
        assert max(load.values()) / min(load.values()) <= 2, load
        assert max(load.values()) <= 12


def test_removing_a_node_moves_only_its_processes_when_loads_allow() -> None:
    ids = [f"p{i}" for i in range(40)]
    before = assign(ids, {"a": 0, "b": 0, "c": 0, "d": 0}, balance=10)  # plain rendezvous
    after = assign(ids, {"a": 0, "b": 0, "c": 0}, balance=10)
    moved = {pid for pid in ids if before[pid] != after[pid]}
    assert moved == {pid for pid in ids if before[pid] == "d"}
    joined = assign(ids, {"a": 0, "b": 0, "c": 0, "d": 0}, balance=10)
    assert joined == before  # a node joining takes back exactly what it ranks first


def test_node_limit_and_full_cluster() -> None:
    placed = assign([f"p{i}" for i in range(6)], {"n1": 1, "n2": 0})
    assert Counter(placed.values())["n1"] == 1
    assert Counter(placed.values())["n2"] == 5
    placed = assign(["a", "b", "c"], {"n1": 1})
    assert Counter(placed.values()) == {"n1": 1, None: 2}
    assert assign(["a"], {}) == {"a": None}


def test_pins_win_within_capacity() -> None:
    ids = [f"p{i}" for i in range(9)]
    free = assign(ids, {"n1": 0, "n2": 0, "n3": 0})
    pid = next(p for p in ids if free[p] != "n3")
    pinned = assign(ids, {"n1": 0, "n2": 0, "n3": 0}, pins={pid: "n3"})
    assert pinned[pid] == "n3"
    assert assign(ids, {"n1": 0, "n2": 0}, pins={pid: "gone"})[pid] in ("n1", "n2")


def test_running_processes_stay_unless_their_node_is_over_capacity() -> None:
    ids = [f"p{i}" for i in range(30)]
    two = assign(ids, {"n1": 0, "n2": 0})
    three = assign(ids, {"n1": 0, "n2": 0, "n3": 0}, holders={p: n for p, n in two.items() if n})
    moved = [p for p in ids if three[p] != two[p]]
    assert all(three[p] == "n3" for p in moved)  # only onto the new node
    load = Counter(three.values())
    assert max(load.values()) <= 12 and load["n3"] == len(moved) >= 6
    # nothing moves when the holders are within capacity
    assert assign(ids, {"n1": 0, "n2": 0, "n3": 0}, holders=three) == three


def test_an_overloaded_node_takes_no_new_processes_but_keeps_its_own() -> None:
    from trio_core.cluster.placement import Headroom
    ids = [f"p{i}" for i in range(12)]
    nodes = {"n1": 0, "n2": 0, "n3": 0}
    before = assign(ids, nodes)
    rooms = {"n2": Headroom(overloaded=True)}
    # nothing new goes to n2 ...
    placed = assign(ids, nodes, rooms=rooms)
    assert "n2" not in placed.values() and None not in placed.values()
    # ... what it runs stays there
    running = {pid: node for pid, node in before.items() if node == "n2"}
    assert running
    kept = assign(ids, nodes, rooms=rooms, holders=running)
    assert all(kept[pid] == "n2" for pid in running)
    # a pin to an overloaded node is not honoured for a new process
    pinned = assign(["q"], nodes, rooms=rooms, pins={"q": "n2"})
    assert pinned["q"] in ("n1", "n3")
    # every node overloaded: processes still run (the cluster degrades, it does not stop)
    everyone = {n: Headroom(overloaded=True) for n in nodes}
    assert None not in assign(ids, nodes, rooms=everyone).values()


def test_limits_count_against_a_nodes_budget() -> None:
    from trio_core.cluster.placement import Headroom, Need
    nodes = {"n1": 0, "n2": 0}
    rooms = {"n1": Headroom(cpu=90, memory_mbytes=1000), "n2": Headroom(cpu=90, memory_mbytes=1000)}
    # 50 % CPU each: one per node fits, a third fits nowhere
    needs = {p: Need(cpu=50) for p in ("a", "b", "c")}
    placed = assign(["a", "b", "c"], nodes, rooms=rooms, needs=needs, balance=10)
    assert sorted(n for n in placed.values() if n) == ["n1", "n2"]
    assert list(placed.values()).count(None) == 1
    # memory likewise; processes without limits are not affected
    needs = {"m1": Need(memory_mbytes=600), "m2": Need(memory_mbytes=600)}
    placed = assign(["m1", "m2", "x", "y"], nodes, rooms=rooms, needs=needs, balance=10)
    assert placed["m1"] != placed["m2"] and placed["x"] and placed["y"]
    # a running process whose limit grew beyond its node's budget moves
    rooms = {"n1": Headroom(cpu=40), "n2": Headroom(cpu=90)}
    moved = assign(["a"], nodes, rooms=rooms, needs={"a": Need(cpu=60)}, holders={"a": "n1"})
    assert moved == {"a": "n2"}


def test_headroom_from_a_heartbeat() -> None:
    import math

    from trio_core.cluster.placement import headroom
    gib = 2**30
    doc = {"cpu_used": 95.0, "memory_used_bytes": 2 * gib, "memory_total_bytes": 8 * gib,
           "max_cpu_usage": 90, "max_memory_usage": 50}
    room = headroom(doc)
    assert room.overloaded and room.cpu == 90 and room.memory_mbytes == 4096
    assert not headroom({**doc, "cpu_used": 10.0}).overloaded
    assert headroom({**doc, "cpu_used": 10.0, "memory_used_bytes": 5 * gib}).overloaded
    off = headroom({"cpu_used": 100.0, "memory_used_bytes": 1, "memory_total_bytes": 2})
    assert not off.overloaded and off.cpu == math.inf and off.memory_mbytes == math.inf


def test_dependents_follow_the_process_they_reference() -> None:
    nodes = {"n1": 0, "n2": 0, "n3": 0}
    ids = [f"ingest{i}" for i in range(6)]
    free = assign(ids, nodes)
    # each ingest gets a snapshot and an egress reading its output, and a chain egress->relay
    deps = {f"snap{i}": f"ingest{i}" for i in range(6)}
    deps.update({f"egress{i}": f"ingest{i}" for i in range(6)})
    deps.update({f"relay{i}": f"egress{i}" for i in range(6)})
    everything = ids + list(deps)
    placed = assign(everything, nodes, deps=deps)
    for i in range(6):
        assert placed[f"ingest{i}"] == free[f"ingest{i}"]  # roots are placed as before
        assert placed[f"snap{i}"] == placed[f"egress{i}"] == placed[f"relay{i}"] \
            == placed[f"ingest{i}"]
    # the root moves (its node left): the dependents move with it
    gone = placed["ingest0"]
    rest = {n: 0 for n in nodes if n != gone}
    after = assign(everything, rest, deps=deps,
                   holders={p: n for p, n in placed.items() if n and n != gone})
    assert after["ingest0"] in rest
    assert after["snap0"] == after["egress0"] == after["relay0"] == after["ingest0"]
    # a pin of the root carries its dependents; a dependent's own holder does not hold it back
    target = next(n for n in nodes if n != placed["ingest1"])
    pinned = assign(everything, nodes, deps=deps, pins={"ingest1": target},
                    holders={p: n for p, n in placed.items() if n})
    assert pinned["ingest1"] == pinned["snap1"] == pinned["relay1"] == target


def test_dependents_of_unknown_processes_and_cycles_are_placed_normally() -> None:
    nodes = {"n1": 0, "n2": 0, "n3": 0}
    ids = [f"p{i}" for i in range(12)]
    plain = assign(ids, nodes)
    deps = {"p0": "missing", "p1": "p2", "p2": "p1", "p3": "p3"}
    assert assign(ids, nodes, deps=deps) == plain
    assert dependency_roots(ids, deps)["p0"] == "p0"
    assert dependency_roots(["a", "b", "c"], {"a": "b", "b": "c"}) == {"a": "c", "b": "c", "c": "c"}


def test_process_dependencies_reads_core_references() -> None:
    records = {
        "probe": {"config": {"input": [{"id": "in", "address": "#ingest:output=output_0"}]}},
        "self": {"config": {"input": [{"id": "in", "address": "#self:output=o"}]}},
        "plain": {"config": {"input": [{"id": "in", "address": "rtmp://x/live"}]}},
        "bad": {"config": {"input": "nonsense"}},
    }
    assert process_dependencies(records) == {"probe": "ingest"}
