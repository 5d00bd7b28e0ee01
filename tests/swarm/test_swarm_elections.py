"""A call refused because the swarm is electing a leader is sent again until one is
elected (or the wait ends), and a read that timed out in the managers' consensus once
more; any other answer comes back at once. No engine needed."""

from __future__ import annotations

from hatchery.runtime.docker import through_elections

NO_LEADER = (b'{"message":"rpc error: code = Unknown desc = The swarm does not have a leader. '
             b"It's possible that too few managers are online.\"}")
TIMED_OUT = b'{"message":"rpc error: code = DeadlineExceeded desc = context deadline exceeded"}\n'


class Answer:
    def __init__(self, status_code: int, content: bytes = b"{}"):
        self.status_code, self.content = status_code, content


class Engine:
    """Answers in turn from ``answers``, recording each call it was sent."""

    def __init__(self, *answers: Answer, clock=None, takes: float = 0.0):
        self.answers, self.calls, self.clock, self.takes = list(answers), [], clock, takes

    def request(self, method, url, *args, **kwargs):
        self.calls.append((method, url, args, kwargs))
        answer = self.answers.pop(0)
        if self.clock is not None and answer.content == TIMED_OUT:
            self.clock.now += self.takes           # the engine's own wait before it gives up
        return answer


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def patient(engine: Engine, clock: Clock, wait: float = 60.0):
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


def test_a_read_that_timed_out_in_an_election_is_sent_once_more():
    clock = Clock()
    engine = Engine(Answer(500, TIMED_OUT), Answer(500, NO_LEADER), Answer(200, b"{}"), clock=clock, takes=20)
    assert patient(engine, clock, wait=60)("GET", "/services/a1").status_code == 200
    assert len(engine.calls) == 3 and clock.now == 20.5


def test_a_lost_quorum_times_out_twice_and_is_told():
    """Two reads that time out (40 s with the engine's own waits) mean no leader is coming."""
    clock = Clock()
    engine = Engine(*[Answer(500, TIMED_OUT)] * 5, clock=clock, takes=20)
    answer = patient(engine, clock, wait=60)("GET", "/nodes")
    assert TIMED_OUT == answer.content and len(engine.calls) == 2 and clock.now == 40


def test_a_write_that_timed_out_is_not_sent_again():
    """It may yet be applied: sending it again could create or update twice."""
    clock = Clock()
    engine = Engine(Answer(500, TIMED_OUT), Answer(200), clock=clock, takes=20)
    assert patient(engine, clock)("POST", "/services/create").content == TIMED_OUT
    assert len(engine.calls) == 1


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
