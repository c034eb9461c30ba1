"""IngestStats' per-agent drops: counted in the totals too, bounded, and the worst agents listed first."""

from __future__ import annotations

from servertrack.common.stats import AGENTS_SHOWN, MAX_AGENTS_COUNTED, IngestStats


def test_a_drop_from_an_agent_counts_in_the_kind_and_under_the_agent() -> None:
    stats = IngestStats()
    stats.refuse_from("web-01", "sample", "over_budget")
    stats.refuse_from("web-01", "hello", "wrong_key")
    assert stats.received["sample"] == 1 and stats.dropped["sample"]["over_budget"] == 1
    assert stats.agent_drops("web-01") == {"over_budget": 1, "wrong_key": 1} and stats.agent_drops("db-01") == {}
    body = stats.snapshot(lost=0, servers=0, pending=0)
    assert body["received"] == body["applied"] + sum(body["dropped"].values()) + body["pending"]
    assert body["agents_dropped"] == [{"name": "web-01", "dropped": {"over_budget": 1, "wrong_key": 1}}]


def test_the_most_dropped_agents_come_first_and_the_agents_counted_are_bounded() -> None:
    stats = IngestStats()
    for index in range(MAX_AGENTS_COUNTED + 50):
        for _ in range(1 + index % 7):
            stats.refuse_from(f"agent-{index:05d}", "sample", "over_budget")
    assert len(stats.by_agent) == MAX_AGENTS_COUNTED  # the later agents count in the totals only
    assert stats.total_dropped()["over_budget"] == sum(1 + index % 7 for index in range(MAX_AGENTS_COUNTED + 50))
    shown = stats.snapshot(lost=0, servers=0, pending=0)["agents_dropped"]
    counts = [entry["dropped"]["over_budget"] for entry in shown]
    assert len(shown) == AGENTS_SHOWN and counts == [7] * AGENTS_SHOWN
    assert [entry["name"] for entry in shown] == sorted(entry["name"] for entry in shown)  # ties by name
