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
