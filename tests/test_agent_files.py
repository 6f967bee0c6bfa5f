"""The agent's files, over real HTTP to the local server's agent server: what it wrote (``conv.files()``), a file's
bytes or text (``conv.download``), a table back as a DataFrame (``conv.read``), and what is refused."""

from __future__ import annotations

import pytest

from openhands_magics import Endpoint, Session
from openhands_magics.errors import NotFoundError, ValidationError
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET

WRITES = Timeline(
    starting=0.1,
    running=0.4,
    steps=(
        "mkdir -p out && printf 'city,n\\nParis,3\\nLyon,5\\n' > out/counts.csv",
        "echo hello there > notes.txt",
    ),
)


@pytest.fixture
def finished_writer():
    with LocalOpenHandsServer(SECRET, timeline=WRITES) as server:
        session = Session()
        handle = session.start("Count the cities", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
        handle.wait(10)
        assert handle.status == "FINISHED"
        yield server, handle
        session.close()


def test_files_lists_what_the_agent_wrote_in_its_workspace(finished_writer):
    _, handle = finished_writer
    assert handle.files() == ("notes.txt", "out/counts.csv")


def test_read_gives_a_dataframe_for_a_csv_the_agent_wrote(finished_writer):
    _, handle = finished_writer
    frame = handle.read("out/counts.csv")
    assert list(frame.columns) == ["city", "n"]
    assert frame["n"].sum() == 8


def test_download_gives_bytes_or_text(finished_writer):
    _, handle = finished_writer
    assert handle.download("notes.txt") == b"hello there\n"
    assert handle.download("notes.txt", text=True) == "hello there\n"
    assert handle.read("notes.txt") == "hello there\n"


def test_a_path_outside_the_workspace_is_refused_before_any_download(finished_writer):
    server, handle = finished_writer
    before = len([r for r in server.agent_requests() if r.path == "/api/file/download"])
    for path in ("../../etc/passwd", "/etc/passwd", "out/../../x"):
        with pytest.raises(ValidationError, match="outside the agent's workspace"):
            handle.download(path)
    assert len([r for r in server.agent_requests() if r.path == "/api/file/download"]) == before


def test_a_missing_file_is_one_line_naming_it(finished_writer):
    _, handle = finished_writer
    with pytest.raises(NotFoundError, match="no file 'nope.csv' in the agent's workspace"):
        handle.read("nope.csv")
