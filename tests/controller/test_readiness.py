"""GET /readyz's logic: ready once every listed study has a daemon here; relisting while not
ready (a deleted study must not hold a replica back); a failed listing is a reason, not a crash."""

from __future__ import annotations

import asyncio

from hwtune.controller.readiness import StudyReadiness, namespace_matcher


class Lister:
    def __init__(self, *listings):
        self.listings = list(listings)
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        result = self.listings[0] if len(self.listings) == 1 else self.listings.pop(0)
        if isinstance(result, Exception):
            raise result
        return set(result)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def check(readiness):
    return asyncio.run(readiness.check())


def test_ready_only_once_every_listed_study_has_a_daemon():
    clock = Clock()
    readiness = StudyReadiness(Lister({("a", "s1"), ("b", "s2")}), clock=clock)
    ready, answer = check(readiness)
    assert not ready and answer["waitingFor"] == ["a/s1", "b/s2"]
    assert "2 of 2 studies" in answer["reason"]
    readiness.daemon_started(("a", "s1"))
    readiness.daemon_started(("x", "other"))  # created after the listing: not waited for
    ready, answer = check(readiness)
    assert not ready and answer["waitingFor"] == ["b/s2"]
    readiness.daemon_started(("b", "s2"))
    assert check(readiness) == (True, {"status": "ready"})


def test_once_ready_it_stays_ready_and_lists_no_more():
    lister = Lister(set())
    readiness = StudyReadiness(lister, clock=Clock())
    assert check(readiness)[0]
    for _ in range(5):
        assert check(readiness)[0]
    assert lister.calls == 1


def test_a_study_deleted_meanwhile_does_not_hold_the_replica_back():
    clock = Clock()
    lister = Lister({("a", "gone"), ("a", "here")}, {("a", "here")})
    readiness = StudyReadiness(lister, relist_seconds=5.0, clock=clock)
    readiness.daemon_started(("a", "here"))
    assert not check(readiness)[0]
    clock.now = 2.0
    assert not check(readiness)[0] and lister.calls == 1  # not listed again before 5 s
    clock.now = 5.5
    assert check(readiness)[0] and lister.calls == 2


def test_a_failed_listing_is_the_reason_and_is_retried():
    clock = Clock()
    lister = Lister(RuntimeError("connection refused"), set())
    readiness = StudyReadiness(lister, clock=clock)
    ready, answer = check(readiness)
    assert not ready and "listing TuningStudies failed: connection refused" in answer["reason"]
    clock.now = 1.0
    assert check(readiness)[0]


def test_without_a_lister_a_replica_is_ready_at_once():
    assert check(StudyReadiness(None)) == (True, {"status": "ready"})


def test_namespace_patterns_match_as_kopf_serves_them():
    assert namespace_matcher(())("anything")
    m = namespace_matcher(("team-*", "!team-old"))
    assert m("team-a") and not m("team-old") and not m("other")
    only_excludes = namespace_matcher(("!kube-*",))
    assert only_excludes("default") and not only_excludes("kube-system")
