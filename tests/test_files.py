"""Issue 17, data in and out without the network: what ``--upload`` sends (DataFrames, files, bytes, capped and
checked first), the note that tells the agent where they are, paths kept inside the workspace, and what a
downloaded file becomes in Python."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from openhands_magics import files
from openhands_magics.errors import ValidationError
from openhands_magics.files import decode_file, prepare_uploads, upload_note, workspace_path


def test_a_dataframe_variable_and_a_file_become_uploads_under_data_with_a_note_for_the_agent(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\n1,2\n")
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    uploads = prepare_uploads(["df", str(raw)], {"df": df})
    assert [u.path for u in uploads] == ["data/df.csv", "data/raw.csv"]  # (CSV: no pyarrow here)
    assert pd.read_csv(io.BytesIO(uploads[0].data)).equals(df) and uploads[1].data == b"a,b\n1,2\n"
    assert upload_note(uploads) == (
        "Files for this task are in the workspace:\n- data/df.csv (DataFrame 3×2, CSV)\n- data/raw.csv (file, 8 bytes)"
    )
    assert "bytes" in repr(uploads[0]) and "1,a" not in repr(uploads[0])  # a repr never holds the data


def test_values_given_directly_are_named_by_position_and_text_becomes_a_text_file() -> None:
    uploads = prepare_uploads([b"\x00\x01", pd.DataFrame({"a": [1]})], {})
    assert [u.path for u in uploads] == ["data/upload_1", "data/upload_2.csv"]
    assert prepare_uploads(["notes"], {"notes": "hello"})[0].path == "data/notes.txt"


@pytest.mark.parametrize(
    ("names", "namespace", "said"),
    [
        (["missing"], {}, "'missing' is neither a notebook variable nor a file"),
        (["model"], {"model": object()}, "model is a object; a DataFrame, bytes, text or a file path can be sent"),
        (["a", "a"], {"a": b"x"}, "two uploads would have the same name"),
    ],
)
def test_what_cannot_be_sent_is_one_line_before_anything_is(names: list[str], namespace: dict, said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        prepare_uploads(names, namespace)


def test_uploads_are_capped_one_by_one_and_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(ValidationError, match=r"big is 0 MB once written; at most 0 MB"):
        prepare_uploads(["big"], {"big": b"x" * 11})
    with pytest.raises(ValidationError, match="in all"):
        prepare_uploads(["a", "b"], {"a": b"x" * 6, "b": b"y" * 6})


@pytest.mark.parametrize(
    ("working_dir", "path", "expected"),
    [
        (".", "data/clean.csv", "/data/clean.csv"),
        ("/workspace/project", "out/plot.png", "/workspace/project/out/plot.png"),
        ("/workspace/project", "/workspace/project/a.txt", "/workspace/project/a.txt"),
        ("/workspace/project", "./x/../y.txt", "/workspace/project/y.txt"),
    ],
)
def test_a_workspace_path_is_made_absolute_inside_the_workspace(working_dir: str, path: str, expected: str) -> None:
    assert workspace_path(working_dir, path) == expected


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "/workspace/projectX/a", "", "a\x00b"])
def test_a_path_outside_the_workspace_is_refused(path: str) -> None:
    with pytest.raises(ValidationError):
        workspace_path("/workspace/project", path)


def test_a_relative_workspace_is_joined_to_the_agent_servers_directory() -> None:
    assert workspace_path(".", "a.csv", root="/srv/agent") == "/srv/agent/a.csv"
    with pytest.raises(ValidationError, match="outside the agent's workspace"):
        workspace_path(".", "../a.csv", root="/srv/agent")


def test_tables_come_back_as_dataframes_images_as_images_and_the_rest_as_text_or_bytes() -> None:
    frame = decode_file("out/clean.csv", b"a,b\n1,2\n3,4\n")
    assert isinstance(frame, pd.DataFrame) and frame.shape == (2, 2)
    assert decode_file("t.tsv", b"a\tb\n1\t2\n").columns.tolist() == ["a", "b"]
    assert decode_file("r.json", b'[{"a": 1}, {"a": 2}]')["a"].tolist() == [1, 2]
    assert decode_file("r.jsonl", b'{"a": 1}\n{"a": 2}\n')["a"].tolist() == [1, 2]
    assert decode_file("x.json", b'"just text"') == '"just text"'  # JSON that is no table: its text
    from IPython.display import Image

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    assert isinstance(decode_file("plot.PNG", png), Image)
    assert decode_file("report.md", "# Done ✓".encode()) == "# Done ✓"
    assert decode_file("blob.bin", b"\xff\xfe\x00") == b"\xff\xfe\x00"
