"""Data in and results out through the Python API, over real HTTP to the local server: files uploaded into the
workspace before the agent runs (the conversation starts idle, the task follows), and a typed result read back from
the file the agent wrote."""

from __future__ import annotations

import dataclasses
import importlib.util

import pandas as pd
import pytest

from openhands_magics import Endpoint, Session
from openhands_magics.errors import OpenHandsError, ValidationError
from openhands_magics.polling import PollSchedule
from openhands_magics.results import RESULT_PATH
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET

RESULT_STEP = 'mkdir -p .openhands && printf \'{"rows": 3, "mean": 2.5, "city": "Paris"}\' > ' + RESULT_PATH
QUICK = Timeline(starting=0.1, running=0.3, steps=(RESULT_STEP,))


@dataclasses.dataclass
class Summary:
    rows: int
    mean: float
    city: str


@pytest.fixture
def local():
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        session = Session(PollSchedule(interval=0.1, max_interval=0.2))  # (a wait ends within 0.2 s of the finish)
        yield server, session, Endpoint.resolve(server.base_url, api_key=SECRET)
        session.close()


def test_an_upload_lands_in_the_workspace_before_the_task_is_sent(local):
    server, session, endpoint = local
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    handle = session.start("Count the rows", endpoint=endpoint, upload={"df": frame})
    start = next(r for r in server.posts() if r.path == "/api/v1/app-conversations")
    assert "initial_message" not in start.body  # started idle: nothing for the agent to run on yet
    both = sorted(server.posts() + server.agent_requests(), key=lambda r: r.received)
    posts = [r.path for r in both if r.method == "POST"]
    assert posts.index("/api/file/upload") < posts.index(f"/api/v1/app-conversations/{handle.id}/send-message")
    sent = next(r for r in server.posts() if r.path.endswith("/send-message")).body
    assert sent["run"] is True
    assert sent["content"][0]["text"].startswith("Count the rows\n\nFiles for this task are in the workspace:\n")
    name, kind = ("df.parquet", "Parquet") if importlib.util.find_spec("pyarrow") else ("df.csv", "CSV")
    assert f"- data/{name} (DataFrame 3×2, {kind})" in sent["content"][0]["text"]
    handle.wait(10)
    assert handle.read(f"data/{name}").equals(frame)
    assert f"data/{name}" in handle.files()


def test_a_failed_upload_is_one_line_and_the_conversation_waits_idle_with_its_ids_recorded(local, monkeypatch):
    server, session, endpoint = local
    from openhands_magics.testing import _workspace

    def refuse(root, request):
        from openhands_magics.testing._http import Reply

        return Reply(500, {"detail": "Failed to upload file: disk full"})

    monkeypatch.setattr(_workspace, "upload", refuse)
    handle = session.start("Count the rows", endpoint=endpoint, upload=[b"1,2\n"])
    assert handle.id is not None and handle in session.history()
    assert handle.note.startswith("Uploading the files failed (")
    assert "nothing was sent and it waits idle" in handle.note and f"--continue {handle.id}" in handle.note
    assert "\n" not in handle.note
    assert not [r for r in server.posts() if r.path.endswith("/send-message")]
    assert handle.refresh().status == "IDLE"


def test_too_large_an_upload_is_refused_before_anything_is_sent(local, monkeypatch):
    server, session, endpoint = local
    from openhands_magics import files

    monkeypatch.setattr(files, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(ValidationError, match="at most"):
        session.start("Count", endpoint=endpoint, upload=[b"x" * 11])
    assert server.posts() == []


def test_a_dataclass_result_comes_back_typed(local):
    _, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns=Summary)
    handle.wait(10)
    assert handle.result == Summary(rows=3, mean=2.5, city="Paris")
    assert handle.result_error is None


def test_the_task_says_where_to_write_the_result_and_what_it_holds(local):
    server, session, endpoint = local
    session.start("Summarise", endpoint=endpoint, returns={"rows": int, "mean": float})
    text = server.posts()[0].body["initial_message"]["content"][0]["text"]
    assert text.startswith("Summarise\n\nWhen you are done, write your result as one JSON object to the file ")
    assert f"{RESULT_PATH} " in text and "- rows: integer\n- mean: number\n" in text


def test_a_result_of_the_wrong_type_is_one_line_never_an_exception(local):
    _, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns={"rows": str})
    handle.wait(10)
    assert handle.result is None
    assert handle.result_error == "invalid result: the result's 'rows' is 3, not a string"
    assert handle.result_error in handle.outcome.problems


def test_a_missing_result_file_is_one_line(server):
    session = Session()
    handle = session.start("Nothing", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET), returns={"n": int})
    handle.wait(10)
    assert handle.result is None and handle.result_error == f"no result: the agent did not write {RESULT_PATH}"
    session.close()


def test_a_json_schema_result_is_checked_against_the_schema(local):
    _, session, endpoint = local
    schema = {"type": "object", "properties": {"rows": {"type": "integer", "minimum": 5}}, "required": ["rows"]}
    handle = session.start("Summarise", endpoint=endpoint, returns=schema)
    handle.wait(10)
    assert handle.result is None
    assert (
        handle.result_error
        == "invalid result: the result does not match the schema at rows: 3 is less than the minimum of 5"
    )


# ---------------------------------------------------------------------------------------------------- the magic
@pytest.fixture
def local_env(monkeypatch):
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


def test_dry_run_shows_the_uploads_by_name_and_size_and_sends_nothing(ip, output, local_env):
    ip.user_ns["df"] = pd.DataFrame({"a": [1, 2]})
    ip.run_line_magic("openhands", "--dry-run --upload df --returns rows:int Count the rows")
    out, _ = output.read()
    assert "  upload: data/df." in out and " bytes)\n" in out
    assert "Files for this task are in the workspace:\n- data/df." in out
    assert "- rows: integer" in out
    assert local_env.requests == []


def test_the_magic_uploads_then_sends_and_reads_the_typed_result(ip, output, local_env):
    ip.user_ns["df"] = pd.DataFrame({"a": [1, 2]})
    handle = ip.run_line_magic("openhands", "--wait --no-panel --upload df --returns rows:int,mean:float Count")
    assert handle.status == "FINISHED"
    assert handle.result == {"rows": 3, "mean": 2.5, "city": "Paris"}
    assert any(p.startswith("data/df.") for p in handle.files())
    out, _ = output.read()
    assert "OpenHands: uploading 1 file (" in out


def test_an_unknown_upload_is_one_line_and_nothing_is_sent(ip, output, local_env):
    ip.run_line_magic("openhands", "--upload no_such_thing Count")
    assert output.one_error_line() == (
        "openhands: --upload: 'no_such_thing' is neither a notebook variable nor a file."
    )
    assert local_env.requests == []


def test_a_fan_out_with_returns_gives_one_dataframe_with_a_column_per_field(local):
    _, session, endpoint = local
    batch = session.map("Summarise {item}", ["a", "b"], endpoint=endpoint, returns=Summary)
    batch.wait(20)
    frame = batch.to_dataframe()
    assert list(frame["rows"]) == [3, 3] and list(frame["city"]) == ["Paris", "Paris"]
    assert list(frame["result_error"]) == [None, None]


def test_a_fan_out_with_an_upload_puts_the_file_in_every_workspace(local):
    server, session, endpoint = local
    batch = session.map("Use {item}", ["a", "b"], endpoint=endpoint, upload={"raw": b"1,2\n"})
    batch.wait(20)
    assert batch.summary.startswith("2/2 finished")
    assert [h.download("data/raw") for h in batch.handles] == [b"1,2\n", b"1,2\n"]
    assert all("initial_message" not in r.body for r in server.posts() if r.path == "/api/v1/app-conversations")


def test_the_card_and_the_text_summary_say_why_a_result_is_missing_in_one_line(local):
    from openhands_magics.views import html_card, text_summary

    _, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns={"total": int})
    handle.wait(10)
    assert handle.result_error == "invalid result: the result has no field 'total'"
    assert "invalid result: the result has no field &#x27;total&#x27;" in html_card(handle)
    assert text_summary(handle).endswith("\ndetails unavailable: invalid result: the result has no field 'total'")


def test_an_svg_the_agent_wrote_shows_as_an_image_never_as_markup():
    from openhands_magics.files import decode_file

    shown = decode_file("plot.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    html = shown._repr_html_()
    assert html.startswith('<img alt="SVG image" src="data:image/svg+xml;base64,') and "<script" not in html


def test_returns_may_name_a_schema_in_the_notebook(ip, output, local_env):
    ip.user_ns["Summary"] = Summary
    handle = ip.run_line_magic("openhands", "--wait --no-panel --returns Summary Summarise")
    assert handle.result == Summary(rows=3, mean=2.5, city="Paris")
    output.read()


def test_a_returns_field_of_an_unknown_type_is_one_line(ip, output, local_env):
    ip.run_line_magic("openhands", "--returns rows:decimal Summarise")
    assert "returns: the field 'rows' has the type 'decimal'" in output.one_error_line()
    assert local_env.requests == []


def test_a_follow_up_asks_for_the_result_again_and_reads_the_new_one(local):
    server, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns=Summary)
    handle.wait(10)
    handle.send("Summarise again")
    handle.wait(10)
    assert handle.result == Summary(rows=3, mean=2.5, city="Paris") and handle.result_error is None
    follow_up = [r for r in server.posts() if r.path.endswith("/send-message")][-1]
    assert follow_up.body["content"][0]["text"].startswith("Summarise again\n\nWhen you are done, write your result")


def test_a_follow_up_whose_agent_writes_no_result_says_so_instead_of_giving_the_last_turns(local):
    server, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns=Summary)
    handle.wait(10)
    assert handle.result == Summary(rows=3, mean=2.5, city="Paris")
    (conversation,), _ = server._snapshot()
    conversation.timeline = dataclasses.replace(conversation.timeline, steps=())  # (its next turn writes nothing)
    handle.send("Now only the mean")
    handle.wait(10)
    assert handle.result is None
    assert handle.result_error == f"no new result: the agent did not write {RESULT_PATH} again for this message"


# ------------------------------------------------------------------------------------------------ a follow-up's files
def test_a_follow_ups_files_land_in_the_workspace_before_its_message_which_says_where(local):
    server, session, endpoint = local
    handle = session.start("Count the rows", endpoint=endpoint)
    handle.wait(10)
    frame = pd.DataFrame({"a": [4, 5]})

    handle.send("Now these too", upload={"more": frame})

    both = sorted(server.posts() + server.agent_requests(), key=lambda r: r.received)
    posts = [r.path for r in both if r.method == "POST"]
    follow_up = f"/api/v1/app-conversations/{handle.id}/send-message"
    assert posts.index("/api/file/upload") < posts.index(follow_up) and posts.count(follow_up) == 1
    said = [r for r in server.posts() if r.path == follow_up][0].body["content"][0]["text"]
    name = "more.parquet" if importlib.util.find_spec("pyarrow") else "more.csv"
    assert said.startswith("Now these too\n\nFiles for this task are in the workspace:\n") and f"data/{name}" in said
    assert handle.follow_up == "Now these too"  # (the card shows what was typed; the agent got the note too)
    handle.wait(10)
    assert handle.read(f"data/{name}").equals(frame)


def test_a_follow_ups_files_resume_a_paused_sandbox_first(local):
    server, session, endpoint = local
    handle = session.start("Count the rows", endpoint=endpoint)
    handle.wait(10)
    handle.pause()

    handle.send("And this file", upload={"notes": "three rows"})

    paths = [r.path for r in server.posts()]
    assert paths[-2].endswith("/resume") and paths[-1].endswith("/send-message")
    assert handle.wait(10).status == "FINISHED" and handle.read("data/notes.txt") == "three rows"


def test_a_follow_up_whose_file_cannot_go_in_sends_nothing_and_says_so_in_one_line(local, monkeypatch):
    server, session, endpoint = local
    from openhands_magics.testing import _workspace

    handle = session.start("Count the rows", endpoint=endpoint)
    handle.wait(10)

    def refuse(root, request):
        from openhands_magics.testing._http import Reply

        return Reply(500, {"detail": "Failed to upload file: disk full"})

    monkeypatch.setattr(_workspace, "upload", refuse)
    with pytest.raises(OpenHandsError, match=r"^Uploading the files failed \(.*disk full.*\); nothing was sent\.$"):
        handle.send("And this file", upload={"notes": "three rows"})
    assert not [r for r in server.posts() if r.path.endswith("/send-message")]


def test_the_magic_continues_with_files(ip, output, local_env):
    handle = ip.run_line_magic("openhands", "--wait --no-panel Count the rows")
    ip.user_ns["df"] = pd.DataFrame({"a": [1, 2]})
    ip.run_line_magic("openhands", f"--continue {handle.id} --wait --no-panel --upload df and these")
    assert any(p.startswith("data/df.") for p in handle.files())
    out, _ = output.read()
    assert "OpenHands: uploading 1 file (" in out
    said = [r for r in local_env.posts() if r.path.endswith("/send-message")][-1].body["content"][0]["text"]
    assert said.startswith("and these\n\nFiles for this task are in the workspace:\n- data/df.")


def test_a_follow_up_with_files_and_a_result_to_write_says_both(local):
    server, session, endpoint = local
    handle = session.start("Summarise", endpoint=endpoint, returns=Summary)
    handle.wait(10)
    handle.send("Summarise these too", upload={"notes": "three rows"})
    said = [r for r in server.posts() if r.path.endswith("/send-message")][-1].body["content"][0]["text"]
    assert said.startswith("Summarise these too\n\nFiles for this task are in the workspace:\n- data/notes.txt")
    assert "When you are done, write your result" in said
    handle.wait(10)
    assert handle.result == Summary(rows=3, mean=2.5, city="Paris")
