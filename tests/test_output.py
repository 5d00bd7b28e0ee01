"""What reaches the operator's terminal from the bus is stripped of control sequences."""

from hatchery.tasks import output


def test_escape_sequences_from_an_agent_never_reach_the_terminal(capsys):
    hostile = "1.0\x1b]0;owned\x07\x1b[2J"
    output.table([{"agent": "a", "answer": hostile}], ["agent", "answer"])
    output.emit_untrusted(f"a: answered with an error: {hostile}", err=True)
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out and "\x07" not in captured.out
    assert "\x1b" not in captured.err
    assert "1.0?]0;owned?" in captured.out


def test_long_answers_are_cut():
    assert len(output.clean("x" * 5000)) == 200


def test_a_long_running_tasks_log_line_starts_with_its_utc_time(capsys):
    from datetime import datetime, timedelta, timezone
    at = datetime(2026, 3, 18, 22, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    output.log_line("client-a: offline: restarted\x1b[2J", at=at)
    output.log_line("serving", err=True)
    captured = capsys.readouterr()
    assert captured.out == "2026-03-18T21:30:00.123Z client-a: offline: restarted?[2J\n"
    stamp, text = captured.err.split(" ", 1)
    assert text == "serving\n"
    assert abs(datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(timezone.utc)) \
        < timedelta(seconds=5)
