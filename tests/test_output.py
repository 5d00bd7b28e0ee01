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


# --- the verbs' answers as a wide table -------------------------------------------------------

def replies(*answers):
    from hatchery.bus.commands import CommandResult
    from hatchery.bus.messages import Reply
    return CommandResult("status-report", [
        Reply(agent, ok=state == "answered", verb="status-report", id="x", rtt_ms=rtt, result=result,
              error=error, state=state) for agent, state, rtt, result, error in answers])


def test_an_answer_becomes_columns_under_its_dotted_path(capsys):
    from hatchery.tasks import answers
    result = replies(
        ("client-a", "answered", 3.2, {"uptime": 12, "counters": {"received": 3, "dropped": {}},
                                       "mem_kb": 2048}, None),
        ("client-b", "silent", None, {}, None),
        ("client-c", "failed", 1.0, {}, "no-reload-configured"))
    answers.show_wide(result)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["AGENT", "STATE", "RTT_MS", "UPTIME", "COUNTERS.RECEIVED", "MEM_KB",
                                "ERROR"]
    assert lines[1].split() == ["client-a", "answered", "3.20", "12", "3", "2048", "-"]
    assert lines[2].split() == ["client-b", "silent"] + ["-"] * 5
    assert lines[3].split()[-1] == "no-reload-configured"


def test_a_hostile_answer_cannot_forge_a_row_break_the_terminal_or_widen_without_bound(capsys):
    from hatchery.tasks import answers
    hostile = {"agent": "someone-else", "state": "answered", "\x1b[2Jk": "v\x1b]0;t\x07" + "x" * 500,
               "deep": {"a": {"b": {"c": {"d": 1}}}}, **{f"f{i}": i for i in range(40)}}
    answers.show_wide(replies(("client-a", "answered", 1.0, hostile, None)))
    captured = capsys.readouterr()
    header, row = captured.out.splitlines()
    assert "\x1b" not in captured.out and "\x07" not in captured.out
    assert row.split()[:2] == ["client-a", "answered"] and "ANSWER.AGENT" in header
    assert len(header.split()) == len(answers.LEAD) + answers.MAX_FIELDS
    assert max(len(cell) for cell in row.split()) <= answers.MAX_CELL
    assert "more fields in the answers: see them with --json" in captured.err
    assert answers.flatten({"deep": {"a": {"b": {"c": 1}}}}) == {"deep.a.b": '{"c": 1}'}


def test_columns_line_up_with_long_names_and_wide_characters(capsys):
    rows = [{"agent": "a", "answer": "版本二"},
            {"agent": "agent-with-a-long-name-0123456789", "answer": "x"},
            {"agent": "b", "answer": "e\u0301te"}]
    output.table(rows, ["agent", "answer", "rtt_ms"])
    lines = capsys.readouterr().out.splitlines()
    starts = {output.width(line[:line.rindex(cell)]) for line, cell in
              zip(lines, ["RTT_MS", "-", "-", "-"])}
    assert len(starts) == 1, lines                      # RTT_MS and its cells in one column
    assert output.width("版本二") == 6 and output.width("e\u0301te") == 3


def test_result_lines_keep_their_columns_for_long_item_names(capsys):
    from hatchery.core.plan import OK, ItemResult
    items = ["agent a", "agent a-name-longer-than-the-usual-twenty-four"]
    column = output.item_width(items)
    for item in items:
        output.result_line(ItemResult(item=item, status=OK, action="start", reason="why"),
                           item_column=column)
    lines = capsys.readouterr().out.splitlines()
    assert len({line.index("start") for line in lines}) == 1, lines
