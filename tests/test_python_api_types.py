"""Wrong types at the Python API's edge are one ValidationError line, raised before anything is sent: the list's
arguments, a wait's time limit, the handle's verbs, an endpoint given as a URL. And ``repository=`` takes a link
wherever it is taken, the list's filter (``list --repo``) included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openhands_magics.errors import ValidationError
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

QUICK = Timeline(starting=0.05, running=0.1)


@pytest.fixture
def quick() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        yield server


@pytest.fixture
def session() -> Iterator[Session]:
    opened = Session(PollSchedule(interval=0.05, max_interval=0.2))  # a wait ends within a poll, not two seconds
    yield opened
    opened.close()


def _endpoint(server: LocalOpenHandsServer) -> Endpoint:
    return Endpoint.resolve(server.base_url, api_key=SECRET, api="v1")


@pytest.mark.parametrize(
    "arguments",
    [
        {"limit": "5"},
        {"limit": 0},
        {"limit": True},
        {"limit": 2.5},
        {"limit": None},
        {"limit": 1001},
        {"repository": 123},
        {"repository": ["octo/demo"]},
        {"repository": "not a repository"},
        {"repository": ""},
        {"running": "yes"},
        {"running": None},
        {"endpoint": "http://127.0.0.1:3000"},
    ],
)
def test_list_arguments_of_the_wrong_type_are_validation_errors_before_any_request(
    quick: LocalOpenHandsServer, session: Session, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        session.list(**{"endpoint": _endpoint(quick), **arguments})
    assert quick.requests == []


@pytest.mark.parametrize(
    "link",
    [
        "https://github.com/octo/demo",
        "https://github.com/Octo/Demo.git",
        "octo/demo",
        "github.com/octo/demo/",
        " OCTO/demo ",
    ],
)
def test_list_by_repository_takes_a_link_as_repo_does_everywhere_else(
    quick: LocalOpenHandsServer, session: Session, link: str
) -> None:
    endpoint = _endpoint(quick)
    wanted = session.start("on demo", repository="octo/demo", endpoint=endpoint)
    session.start("on other", repository="octo/other", endpoint=endpoint)
    wait_until(lambda: len(quick.conversation_ids()) == 2)
    wanted.refresh()
    listed = session.list(repository=link, endpoint=endpoint)
    assert [h.id for h in listed] == [wanted.id]


def test_the_magics_list_repo_takes_a_link(
    quick: LocalOpenHandsServer, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    for name, value in quick.environ().items():
        monkeypatch.setenv(name, value)
    start_ipython()
    shell = get_ipython()
    shell.run_line_magic("load_ext", "openhands_magics")
    try:
        started = shell.run_line_magic("openhands", "--repo octo/demo on demo")
        shell.run_line_magic("openhands", "--repo octo/other on other")
        wait_until(lambda: len(quick.conversation_ids()) == 2)
        started.refresh()
        listed = shell.run_line_magic("openhands", "list --repo https://github.com/octo/demo")
        assert [h.id for h in listed] == [started.id]
    finally:
        shell.run_line_magic("unload_ext", "openhands_magics")


@pytest.mark.parametrize("timeout", ["soon", -1, float("nan"), True, [1], "10"])
def test_wait_with_a_time_limit_that_is_no_number_of_seconds_is_a_validation_error_at_once(
    quick: LocalOpenHandsServer, session: Session, timeout: object
) -> None:
    handle = session.start("hi", endpoint=_endpoint(quick))
    before = len(quick.requests)
    with pytest.raises(ValidationError, match="timeout must be a number of seconds"):
        handle.wait(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="on_change must be a function"):
        handle.wait(timeout=5, on_change="print")  # type: ignore[arg-type]
    assert len(quick.requests) == before


def test_wait_takes_zero_and_whole_numbers(quick: LocalOpenHandsServer, session: Session) -> None:
    from openhands_magics.errors import WaitTimeout

    handle = session.start("hi", endpoint=_endpoint(quick))
    with pytest.raises(WaitTimeout):
        handle.wait(timeout=0)
    assert handle.wait(timeout=10).is_final


@pytest.mark.parametrize("value", [123, None, b"fix it", ["fix it"], 1.5])
def test_the_handles_verbs_refuse_wrong_types_before_anything_is_sent(
    quick: LocalOpenHandsServer, session: Session, value: object
) -> None:
    handle = session.start("hi", endpoint=_endpoint(quick))
    handle.wait(timeout=10)
    before = len(quick.requests)
    with pytest.raises(ValidationError, match="message must be text"):
        handle.send(value)  # type: ignore[arg-type]
    if value is not None:  # diff() of no path is the diff of every changed file
        with pytest.raises(ValidationError, match="path must be a file path"):
            handle.diff(value)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="subscribe"):
        handle.subscribe(value)  # type: ignore[arg-type]
    assert len(quick.requests) == before


@pytest.mark.parametrize("call", ["start", "attach", "find"])
def test_an_endpoint_given_as_a_url_is_a_validation_error_saying_how(
    quick: LocalOpenHandsServer, session: Session, call: str
) -> None:
    argument = "hi" if call == "start" else "0123456789abcdef0123456789abcdef"
    with pytest.raises(ValidationError, match=r"endpoint must be an Endpoint, e\.g\. Endpoint\.resolve\(\"https"):
        getattr(session, call)(argument, endpoint=quick.base_url)
    assert quick.requests == []


def test_an_endpoint_given_as_a_url_with_a_password_is_refused_without_echoing_it(session: Session) -> None:
    with pytest.raises(ValidationError) as refused:
        session.start("hi", endpoint="https://me:hunter2-password@openhands.example")  # type: ignore[arg-type]
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("timeout", ["30", 0, -5, None, float("nan"), True])
def test_an_endpoint_timeout_that_is_no_positive_number_is_a_validation_error(timeout: object) -> None:
    with pytest.raises(ValidationError, match="timeout must be a"):
        Endpoint.resolve("http://127.0.0.1:9", api_key=SECRET, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("repository", [0, False, [], 123])
def test_a_falsy_repository_of_the_wrong_type_is_not_taken_for_none(
    quick: LocalOpenHandsServer, session: Session, repository: object
) -> None:
    with pytest.raises(ValidationError, match="--repo must be text"):
        session.start("hi", repository=repository, endpoint=_endpoint(quick))  # type: ignore[arg-type]
    assert quick.requests == []
