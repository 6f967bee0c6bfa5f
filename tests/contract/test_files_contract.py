"""Issue 17 against a live server: a DataFrame uploaded before the agent runs is read by the agent's own command, a
file the agent wrote comes back as a DataFrame, a ``--returns`` result comes back typed, and a notebook executed
twice with papermill starts each conversation once (V1 only; the fake LLM's scripted steps are the agent's
commands)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from openhands_magics.polling import PollSchedule
from openhands_magics.results import RESULT_PATH
from openhands_magics.session import Session

from ..conftest import papermill_twice
from .conftest import Live
from .test_contract import FINISH_WITHIN

#: What the agent runs: it counts the uploaded table's lines (its observation, and a file), writes a table of its
#: own, and writes its result from what it counted.
STEPS = [
    "mkdir -p out .openhands",
    "wc -l data/df.csv",
    "wc -l < data/df.csv > out/lines.txt",
    "printf 'city,n\\nParis,3\\nLyon,5\\n' > out/table.csv",
    'printf \'{"rows": %s, "city": "Paris"}\' $(( $(wc -l < data/df.csv) - 1 )) > ' + RESULT_PATH,
]
FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


@dataclasses.dataclass
class Summary:
    rows: int
    city: str


@pytest.fixture
def scripted(live: Live) -> Iterator[Live]:
    """The fake LLM runs :data:`STEPS` each turn; its settings are put back afterwards."""
    if live.expect_api == "v0":  # (where the client refuses each in one line: tested without a server)
        pytest.skip("--upload, --returns and --once are V1's")
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("the agent's command counts the lines of data/df.csv: a DataFrame goes as Parquet with pyarrow")
    if not live.llm:
        pytest.skip("OPENHANDS_CONTRACT_LLM is not set")
    with urllib.request.urlopen(f"{live.llm}/fake/config", timeout=10) as answer:  # noqa: S310 - loopback
        before = json.loads(answer.read())
    live.fake_llm(steps=STEPS, delay=0)
    yield live
    live.fake_llm(steps=before.get("steps") or [], delay=before.get("delay", 0), answer=before.get("answer"))


@pytest.fixture
def session(scripted: Live) -> Iterator[Session]:
    session = Session(PollSchedule(interval=1.0, max_interval=3.0))
    if session.client(scripted.endpoint()).dialect().name != "v1":
        pytest.skip("V0 servers cannot start a conversation idle (the V0 dialect says so in one line)")
    session.remember = False
    yield session
    session.close()


def test_an_uploaded_dataframe_is_read_by_the_agent_and_its_files_and_typed_result_come_back(
    session: Session, scripted: Live
) -> None:
    handle = session.start(
        "Count the rows of the table", endpoint=scripted.endpoint(), upload={"df": FRAME}, returns=Summary
    )
    assert handle.note is None, handle.note
    handle.wait(timeout=FINISH_WITHIN)
    assert handle.status == "FINISHED"
    print(f"\nworkspace: {handle.workspace_dir}; files: {handle.files()}; result: {handle.result!r}")
    assert handle.download("out/lines.txt", text=True).strip() == "4"  # the header and three rows
    frame = handle.read("out/table.csv")
    assert list(frame.columns) == ["city", "n"] and frame["n"].tolist() == [3, 5]
    assert handle.read("data/df.csv").equals(FRAME)
    assert set(handle.files()) == {"data/df.csv", "out/lines.txt", "out/table.csv", RESULT_PATH}
    assert handle.result == Summary(rows=3, city="Paris") and handle.result_error is None
    events = handle.events()
    said = [e.text for e in events if "data/df.csv" in (getattr(e, "text", "") or "")]
    print(f"events mentioning data/df.csv: {said[:3]}")
    with pytest.raises(Exception, match="outside the agent's workspace"):
        handle.download("/etc/passwd")


def test_the_magic_uploads_a_notebook_dataframe_and_reads_the_result(
    ip: object, scripted: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", scripted.base_url)
    monkeypatch.setenv("OPENHANDS_API_KEY", scripted.api_key)
    ip.user_ns["df"] = FRAME  # type: ignore[attr-defined]
    handle = ip.run_line_magic(  # type: ignore[attr-defined]
        "openhands", "--wait --no-panel --upload df --returns rows:int,city:str Count the rows of data/df.csv"
    )
    assert handle is not None and handle.status == "FINISHED", capsys.readouterr()
    assert handle.result == {"rows": 3, "city": "Paris"}
    assert handle.read("out/table.csv").shape == (2, 2)


def test_a_notebook_executed_twice_with_papermill_starts_its_conversation_once(scripted: Live, tmp_path: Path) -> None:
    path = tmp_path / "twice.ipynb"
    # (a task of its own: --once would attach the first run to a conversation an earlier test run started)
    cells = ["%load_ext openhands_magics", f"%openhands Say hello from the papermill contract test {uuid.uuid4().hex}"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
    env.update(OPENHANDS_BASE_URL=scripted.base_url, OPENHANDS_API_KEY=scripted.api_key)
    env.update(IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    first, second = (_text_output(executed) for executed in papermill_twice(path, env, timeout=300))
    print(f"\nfirst run: {first}\nsecond run: {second}")
    assert "FINISHED" in first and "already started at" not in first and "already started at" in second
    assert _conversation_id(first) == _conversation_id(second) is not None


def _text_output(path: Path) -> str:
    """The text the task's cell saved (its ``text/plain`` outputs and streams)."""
    cell = nbformat.read(path, as_version=4).cells[1]
    texts = [o.get("text", "") for o in cell.outputs if o.output_type == "stream"]
    texts += [o["data"].get("text/plain", "") for o in cell.outputs if "data" in o]
    return "\n".join(texts)


def _conversation_id(text: str) -> str | None:
    import re

    found = re.search(r"OpenHands conversation ([0-9a-f]{32})", text)
    return found.group(1) if found else None
