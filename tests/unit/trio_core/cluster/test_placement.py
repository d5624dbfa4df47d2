"""Rendezvous placement with bounded loads (trio_core/cluster/placement.py)."""

from __future__ import annotations

from collections import Counter

from trio_core.cluster.placement import assign, rank, score


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
