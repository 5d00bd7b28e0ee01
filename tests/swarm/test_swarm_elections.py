"""A call refused because the swarm is electing a leader is sent again until one is
elected (or the wait ends); any other answer comes back at once. No engine needed."""

from __future__ import annotations

from hatchery.runtime.docker import through_elections

NO_LEADER = (b'{"message":"rpc error: code = Unknown desc = The swarm does not have a leader. '
             b"It's possible that too few managers are online.\"}")


class Answer:
    def __init__(self, status_code: int, content: bytes = b"{}"):
        self.status_code, self.content = status_code, content


class Engine:
    """Answers in turn from ``answers``, recording each call it was sent."""

    def __init__(self, *answers: Answer):
        self.answers, self.calls = list(answers), []

    def request(self, method, url, *args, **kwargs):
        self.calls.append((method, url, args, kwargs))
        return self.answers.pop(0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def patient(engine: Engine, clock: Clock, wait: float = 20.0):
    return through_elections(engine.request, wait=wait, pause=0.5, clock=clock, sleep=clock.sleep)


def test_a_call_refused_during_an_election_is_sent_again_until_a_leader_answers():
    engine, clock = Engine(Answer(500, NO_LEADER), Answer(500, NO_LEADER), Answer(200, b"[]")), Clock()
    answer = patient(engine, clock)("POST", "/services/create", data='{"Name": "a1"}', timeout=5)
    assert answer.status_code == 200 and clock.now == 1.0
    assert [c[0:2] for c in engine.calls] == [("POST", "/services/create")] * 3
    assert all(c[3] == {"data": '{"Name": "a1"}', "timeout": 5} for c in engine.calls)


def test_the_refusal_comes_back_once_no_leader_is_elected_within_the_wait():
    engine, clock = Engine(*[Answer(500, NO_LEADER)] * 10), Clock()
    answer = patient(engine, clock, wait=2.0)("GET", "/nodes")
    assert answer.status_code == 500 and NO_LEADER in answer.content
    assert len(engine.calls) == 5 and clock.now == 2.0


def test_other_failures_and_successes_are_not_sent_again():
    for answer in (Answer(500, b'{"message":"rpc error: code = Unknown desc = name conflicts"}'),
                   Answer(404, b'{"message":"service a1 not found"}'), Answer(200)):
        engine, clock = Engine(answer), Clock()
        assert patient(engine, clock)("GET", "/services/a1") is answer
        assert len(engine.calls) == 1 and clock.now == 0.0


def test_a_streamed_success_is_not_read():
    class Streamed:
        status_code = 200

        @property
        def content(self):
            raise AssertionError("a successful answer's body is the caller's to read")
    engine = Engine(Streamed())
    assert patient(engine, Clock())("GET", "/events").status_code == 200
