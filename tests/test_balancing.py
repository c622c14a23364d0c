"""The balancing algorithms on their own: no network, no database."""

from __future__ import annotations

import random
import threading
from collections import Counter
from types import SimpleNamespace

import pytest

from django_gateway.balancing import (
    HashRing,
    InFlight,
    Instance,
    LeastConnections,
    PowerOfTwoChoices,
    WeightedRoundRobin,
    hash_key,
)
from django_gateway.balancing.consistent_hash import MAX_POINTS, point_counts
from django_gateway.runtime import runtime


def always(_: Instance) -> bool:
    return True


def make(n: int, weight: int = 100) -> list[Instance]:
    return [Instance(f"10.0.0.{i + 1}", 8000, weight) for i in range(n)]


def keys(n: int = 10_000) -> list[str]:
    return [f"client-{i}" for i in range(n)]


# --- round robin ------------------------------------------------------------------------------


def test_round_robin_follows_weights_smoothly():
    a, b, c = Instance("a", 1, 5), Instance("b", 1, 1), Instance("c", 1, 1)
    rr = WeightedRoundRobin([a, b, c])
    picks = [rr.pick(always) for _ in range(7)]
    assert Counter(picks) == {a: 5, b: 1, c: 1}
    assert picks == [a, a, b, a, c, a, a]  # nginx's smooth order: no burst of five a's


def test_round_robin_skips_unusable_and_returns_none_when_nothing_is_usable():
    a, b = make(2)
    rr = WeightedRoundRobin([a, b])
    assert {rr.pick(lambda i: i is not a) for _ in range(4)} == {b}
    assert rr.pick(lambda i: False) is None


# --- least connections ------------------------------------------------------------------------


def test_least_connections_prefers_the_idle_instance():
    a, b, c = make(3)
    in_flight = InFlight()
    lc = LeastConnections([a, b, c], in_flight)
    in_flight.acquire(a)
    in_flight.acquire(b)
    assert {lc.pick(always) for _ in range(10)} == {c}
    in_flight.acquire(c)
    in_flight.acquire(c)
    assert {lc.pick(always) for _ in range(10)} == {a, b}  # tied at 1: shared in turn
    in_flight.release(c)
    in_flight.release(c)
    in_flight.release(a)
    in_flight.release(b)
    assert in_flight.total() == 0


def test_least_connections_weighs_load_by_weight():
    heavy, light = Instance("heavy", 1, 300), Instance("light", 1, 100)
    in_flight = InFlight()
    lc = LeastConnections([heavy, light], in_flight)
    for _ in range(2):
        in_flight.acquire(heavy)
    in_flight.acquire(light)
    assert lc.pick(always) is heavy  # 2/300 < 1/100
    in_flight.acquire(heavy)
    in_flight.acquire(heavy)
    assert lc.pick(always) is light  # 4/300 > 1/100


def test_least_connections_breaks_ties_by_weighted_round_robin():
    heavy, light = Instance("heavy", 1, 300), Instance("light", 1, 100)
    lc = LeastConnections([heavy, light])
    assert Counter(lc.pick(always) for _ in range(400)) == {heavy: 300, light: 100}


def test_least_connections_under_concurrent_load_follows_weights():
    """Requests that stay in flight pile up in proportion to the weights."""
    heavy, light = Instance("heavy", 1, 300), Instance("light", 1, 100)
    in_flight = InFlight()
    lc = LeastConnections([heavy, light], in_flight)
    for _ in range(40):
        in_flight.acquire(lc.pick(always))
    assert (in_flight.get(heavy), in_flight.get(light)) == (30, 10)


def test_least_connections_respects_usable():
    a, b = make(2)
    in_flight = InFlight()
    in_flight.acquire(a)
    lc = LeastConnections([a, b], in_flight)
    assert lc.pick(lambda i: i is not b) is a
    assert lc.pick(lambda i: False) is None


def test_in_flight_counts_are_thread_safe_and_leave_nothing_behind():
    a = Instance("a", 1, 1)
    in_flight = InFlight()

    def hammer() -> None:
        for _ in range(5_000):
            in_flight.acquire(a)
            in_flight.release(a)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert in_flight.get(a) == 0 and in_flight._counts == {}


# --- random: power of two choices ---------------------------------------------------------------


def p2c(instances: list[Instance], in_flight: InFlight | None = None) -> PowerOfTwoChoices:
    balancer = PowerOfTwoChoices(instances, in_flight)
    balancer.random = random.Random(7).random  # type: ignore[method-assign]
    return balancer


def test_two_choices_idle_distribution_follows_weights():
    a, b, c = Instance("a", 1, 100), Instance("b", 1, 200), Instance("c", 1, 700)
    balancer = p2c([a, b, c])
    counts = Counter(balancer.pick(always) for _ in range(20_000))
    assert counts[a] / 20_000 == pytest.approx(0.1, abs=0.02)
    assert counts[b] / 20_000 == pytest.approx(0.2, abs=0.02)
    assert counts[c] / 20_000 == pytest.approx(0.7, abs=0.02)


def test_two_choices_avoids_a_loaded_instance():
    a, b, c = make(3)
    in_flight = InFlight()
    for _ in range(5):
        in_flight.acquire(a)
    balancer = p2c([a, b, c], in_flight)
    counts = Counter(balancer.pick(always) for _ in range(3_000))
    assert counts[a] == 0  # two distinct draws: a always meets an idle rival
    assert counts[b] == pytest.approx(1_500, rel=0.1)


def test_two_choices_draws_distinct_usable_instances():
    a, b, c = make(3)
    in_flight = InFlight()
    in_flight.acquire(b)
    balancer = p2c([a, b, c], in_flight)
    assert {balancer.pick(lambda i: i is not c) for _ in range(200)} == {a}
    assert {balancer.pick(lambda i: i is b) for _ in range(5)} == {b}
    assert balancer.pick(lambda i: False) is None


# --- consistent hashing -----------------------------------------------------------------------


def owners(ring: HashRing, usable=always) -> dict[str, Instance | None]:
    return {key: ring.pick(usable, key) for key in keys()}


def moved(before: dict, after: dict) -> list[str]:
    return [key for key in before if before[key] != after[key]]


def test_same_key_same_instance_across_rings_and_orders():
    instances = make(4)
    ring, reordered = HashRing(instances), HashRing(list(reversed(instances)))
    for key in keys(500):
        first = ring.pick(always, key)
        assert ring.pick(always, key) is first
        assert reordered.pick(always, key) == first  # every process agrees


def test_consistent_hash_spreads_keys_evenly():
    counts = Counter(owners(HashRing(make(4))).values())
    assert len(counts) == 4
    for count in counts.values():
        assert 1_750 <= count <= 3_250  # 2,500 each on a perfect ring


def test_consistent_hash_follows_weights():
    heavy, light = Instance("heavy", 1, 300), Instance("light", 1, 100)
    counts = Counter(owners(HashRing([heavy, light])).values())
    assert counts[heavy] / 10_000 == pytest.approx(0.75, abs=0.07)


def test_adding_a_fifth_instance_moves_about_a_fifth_of_the_keys():
    four = make(4)
    fifth = Instance("10.0.0.99", 8000, 100)
    before, after = owners(HashRing(four)), owners(HashRing([*four, fifth]))
    changed = moved(before, after)
    assert 0.12 <= len(changed) / 10_000 <= 0.30
    assert all(after[key] == fifth for key in changed)  # only to the newcomer


def test_removing_an_instance_moves_only_its_keys():
    four = make(4)
    gone = four[2]
    before, after = owners(HashRing(four)), owners(HashRing([i for i in four if i != gone]))
    assert {before[key] for key in moved(before, after)} == {gone}
    assert not any(owner == gone for owner in after.values())


def test_skipping_an_ejected_instance_moves_only_its_keys_like_removing_it():
    four = make(4)
    ejected = four[1]
    ring = HashRing(four)
    before = owners(ring)
    skipping = owners(ring, lambda i: i != ejected)
    assert {before[key] for key in moved(before, skipping)} == {ejected}
    assert skipping == owners(HashRing([i for i in four if i != ejected]))


def test_consistent_hash_walks_past_every_unusable_instance():
    four = make(4)
    ring = HashRing(four)
    only = four[3]
    assert {ring.pick(lambda i: i is only, key) for key in keys(200)} == {only}
    assert ring.pick(lambda i: False, "k") is None


def test_ring_size_scales_with_weight_and_is_capped():
    assert point_counts(make(3)) == [160, 160, 160]
    assert point_counts([Instance("a", 1, 100), Instance("b", 1, 300)]) == [160, 480]
    assert point_counts(make(3, weight=1)) == [160, 160, 160]  # the unit is the smallest weight
    capped = point_counts([Instance("a", 1, 1), Instance("b", 1, 1000)])
    assert sum(capped) <= MAX_POINTS + 2 and capped[1] == pytest.approx(capped[0] * 1000, rel=0.01)


def exchange(**fields):
    fields.setdefault("client_ip", "203.0.113.9")
    fields.setdefault("identity", None)
    fields.setdefault("environ", {})
    return SimpleNamespace(**fields)


def service(hash_on: str, header: str = "", cookie: str = ""):
    return SimpleNamespace(hash_on=hash_on, hash_on_header=header, hash_on_cookie=cookie)


def test_hash_key_by_ip_consumer_header_and_cookie_with_client_ip_fallback():
    consumer = SimpleNamespace(consumer=SimpleNamespace(id=42), anonymous=False)
    anonymous = SimpleNamespace(consumer=SimpleNamespace(id=7), anonymous=True)
    assert hash_key(service("ip"), exchange()) == "203.0.113.9"
    assert hash_key(service("consumer"), exchange(identity=consumer)) == "42"
    assert hash_key(service("consumer"), exchange(identity=anonymous)) == "203.0.113.9"
    assert hash_key(service("consumer"), exchange()) == "203.0.113.9"
    by_header = service("header", header="X-Tenant-Id")
    assert hash_key(by_header, exchange(environ={"HTTP_X_TENANT_ID": "acme"})) == "acme"
    assert hash_key(by_header, exchange(environ={"HTTP_X_TENANT_ID": ""})) == "203.0.113.9"
    assert hash_key(by_header, exchange()) == "203.0.113.9"
    by_content_type = service("header", header="content-type")
    assert hash_key(by_content_type, exchange(environ={"CONTENT_TYPE": "a/b"})) == "a/b"
    by_cookie = service("cookie", cookie="sid")
    assert hash_key(by_cookie, exchange(environ={"HTTP_COOKIE": "a=1; sid=s1"})) == "s1"
    assert hash_key(by_cookie, exchange()) == "203.0.113.9"


# --- the per-process registry -----------------------------------------------------------------


def test_registry_rebuilds_on_a_new_instance_set_or_algorithm_only():
    balancers = runtime.balancers
    instances = tuple(make(2))
    rr = balancers.for_service("svc", instances)
    assert isinstance(rr, WeightedRoundRobin)
    assert balancers.for_service("svc", instances) is rr
    assert balancers.for_service("svc", tuple(make(2))) is rr  # equal set, another tuple
    lc = balancers.for_service("svc", instances, "least_connections")
    assert isinstance(lc, LeastConnections)
    assert lc.in_flight is balancers.in_flight("svc")
    grown = balancers.for_service("svc", tuple(make(3)), "least_connections")
    assert grown is not lc and grown.in_flight is lc.in_flight  # counts survive the rebuild
    assert isinstance(balancers.for_service("svc", instances, "random"), PowerOfTwoChoices)
    assert isinstance(balancers.for_service("svc", instances, "consistent_hash"), HashRing)
    assert isinstance(balancers.for_service("svc", instances, "bogus"), WeightedRoundRobin)
    assert balancers.for_service("other", instances) is not balancers.for_service("svc", instances)
