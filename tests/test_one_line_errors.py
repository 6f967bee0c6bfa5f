"""Every error is one line saying what to do: an answer nested too deep to read (to the API probe and to any read, on
both clients), a CA bundle that is not PEM, a message with a lone surrogate, a proxy refusing during API detection.
Never a raw RecursionError, SSLError or UnicodeEncodeError, never "Unexpected error (...)"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import RetryPolicy
from openhands_magics.errors import ConfigurationError, OpenHandsError, ProtocolError, ValidationError
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

ONCE = RetryPolicy(attempts=1)
DEEP = b"[" * 100_000 + b"]" * 100_000
#: Nested past what json decodes on every supported Python (3.10 and 3.11 stop near 1,000 levels, 3.12 near 2,000,
#: 3.13 near 8,000: there 5,000 levels decode, and are then an answer of the wrong shape, not one too deep to read).
TOO_DEEP = 20_000
QUICK = Timeline(starting=0.05, running=0.1, changes=(("UPDATED", "a.py"),))


@pytest.fixture
def quick() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        yield server


@pytest.fixture
def shell() -> Iterator[Any]:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    start_ipython()
    ip = get_ipython()
    ip.run_line_magic("load_ext", "openhands_magics")
    yield ip
    ip.run_line_magic("unload_ext", "openhands_magics")


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Unexpected error" not in text
    return text


# ---------------------------------------------------------------------------------------------------- nested answers
@pytest.mark.parametrize("api", ["v1", "v0"])
def test_a_deeply_nested_answer_to_the_api_probe_is_a_protocol_error_on_both_clients(api: str) -> None:
    with LocalOpenHandsServer(SECRET, api=api) as server:
        server.inject(method="GET", status=200, body=DEEP, times=10)
        with OpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE) as client:
            with pytest.raises(ProtocolError, match="nested too deeply|not valid JSON|speaks neither") as caught:
                client.dialect()
        _one_line(caught.value)

        async def asynchronously() -> None:
            async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE) as client:
                await client.dialect()

        server.inject(method="GET", status=200, body=DEEP, times=10)
        with pytest.raises(ProtocolError):
            asyncio.run(asynchronously())


def test_a_deeply_nested_probe_answer_is_one_line_from_the_magic(
    shell: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalOpenHandsServer(SECRET) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        server.inject(method="GET", status=200, body=DEEP, times=10)
        shell.run_line_magic("openhands", "list")
    _, err = capsys.readouterr()
    assert err.startswith("openhands: ") and err.count("\n") == 1, err
    assert "Unexpected error" not in err and "RecursionError" not in err


def _reads(conversation: Any) -> dict[str, Callable[[Any], Any]]:
    return {
        "refresh": lambda c: c.refresh(conversation),
        "read": lambda c: c.read([conversation]),
        "find": lambda c: c.get_conversation(conversation.conversation_id),
        "search": lambda c: c.search(),
        "answer": lambda c: c.answer(conversation),
        "changes": lambda c: c.changes(conversation),
        "diff": lambda c: c.diff(conversation, "a.py"),
        "outcome.changes": lambda c: c.changes(conversation),
    }


@pytest.mark.parametrize("name", list(_reads(None)))
@pytest.mark.parametrize("depth", [100_000, TOO_DEEP])
def test_a_deeply_nested_answer_to_any_read_is_a_protocol_error_on_both_clients(
    quick: LocalOpenHandsServer, name: str, depth: int
) -> None:
    deep = b"[" * depth + b"]" * depth
    with OpenHandsClient(SECRET, base_url=quick.base_url, api="v1", retry=ONCE) as client:
        task = client.start_conversation("hi")
        wait_until(lambda: quick.conversation_ids())
        conversation = client.refresh(task)
        quick.inject(method="GET", status=200, body=deep)
        with pytest.raises(ProtocolError) as caught:
            _reads(conversation)[name](client)
        _one_line(caught.value)

    async def asynchronously() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=quick.base_url, api="v1", retry=ONCE) as client:
            quick.inject(method="GET", status=200, body=deep)
            await _reads(conversation)[name](client)

    with pytest.raises(ProtocolError):
        asyncio.run(asynchronously())


# ---------------------------------------------------------------------------------------------------- CA bundles
@pytest.mark.parametrize(
    "content",
    [
        b"not a certificate\n",
        b"",
        b"\x30\x82\x01\x0a\x02\x82\x01\x01\x00" * 20,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    ],
)
def test_a_ca_bundle_that_is_not_pem_is_one_configuration_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    bundle = tmp_path / "company-ca.crt"
    bundle.write_bytes(content)
    for client_class in (OpenHandsClient, AsyncOpenHandsClient):
        with pytest.raises(ConfigurationError, match=r"The CA bundle '.*company-ca\.crt' could not be loaded .*PEM"):
            client_class(SECRET, base_url="https://openhands.example.com", ca_bundle=str(bundle))
    session = Session()
    endpoint = Endpoint.resolve("https://openhands.example.com", api_key=SECRET, ca_bundle=str(bundle))
    with pytest.raises(ConfigurationError, match="company-ca.crt"):
        session.start("hi", endpoint=endpoint)
    session.close()


def test_a_ca_bundle_that_is_not_pem_is_one_line_from_the_magic(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "ca.der"
    bundle.write_bytes(b"\x30\x82" + b"\x00" * 64)
    monkeypatch.setenv("OPENHANDS_BASE_URL", "https://openhands.example.com")
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    monkeypatch.setenv("OPENHANDS_CA_BUNDLE", str(bundle))
    shell.run_line_magic("openhands", "list")
    _, err = capsys.readouterr()
    assert err.startswith("openhands: The CA bundle") and "ca.der" in err and err.count("\n") == 1, err
    assert "SSLError" not in err and "Unexpected error" not in err


# ---------------------------------------------------------------------------------------------------- surrogates
@pytest.mark.parametrize("text", ["\ud800", "fix it \udfff please", "emoji cut: \ud83d", "\udcff bytes"])
def test_a_message_with_a_lone_surrogate_is_refused_before_anything_is_sent(
    quick: LocalOpenHandsServer, text: str
) -> None:
    with OpenHandsClient(SECRET, base_url=quick.base_url, api="v1", retry=ONCE) as client:
        with pytest.raises(ValidationError, match=r"lone surrogate \(U\+D[89A-F][0-9A-F]{2}\) at character \d+"):
            client.start_conversation(text)
        assert quick.requests == []
        task = client.start_conversation("hi")
        wait_until(lambda: quick.conversation_ids())
        conversation = client.refresh(task)
        posts = len(quick.posts())
        with pytest.raises(ValidationError, match="lone surrogate"):
            client.send_message(conversation, text)
    session = Session()
    handle = session.attach(conversation.conversation_id, endpoint=Endpoint.resolve(quick.base_url, api_key=SECRET))
    with pytest.raises(ValidationError, match="lone surrogate"):
        handle.send(text)
    with pytest.raises(ValidationError, match="lone surrogate"):
        session.start(text, endpoint=handle.endpoint)
    assert len(quick.posts()) == posts
    session.close()


def test_a_page_token_that_no_request_could_carry_is_a_validation_error(quick: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=quick.base_url, api="v1", retry=ONCE) as client:
        for page_id in ("\ud800", "a\nb", 5):
            with pytest.raises(ValidationError, match="page_id"):
                client.search(page_id=page_id)  # type: ignore[arg-type]
    assert quick.requests == []


# ---------------------------------------------------------------------------------------------------- proxies
@pytest.fixture
def refusing_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOpenHandsServer]:
    """A proxy (named by HTTP_PROXY) that wants credentials for every request."""
    with LocalOpenHandsServer(SECRET) as proxy:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        proxy.inject(status=407, body=b"", headers={"Proxy-Authenticate": 'Basic realm="corp"'}, times=100)
        yield proxy


def test_a_proxy_refusing_during_api_detection_is_the_proxy_line_on_both_clients(
    refusing_proxy: LocalOpenHandsServer, dead_url: str
) -> None:
    with OpenHandsClient(SECRET, base_url=dead_url, use_env_proxy=True, retry=ONCE) as client:
        with pytest.raises(ConfigurationError, match=r"The proxy refused the request \(HTTP 407.*user and password"):
            client.get_conversation("0123456789abcdef0123456789abcdef")

    async def asynchronously() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=dead_url, use_env_proxy=True, retry=ONCE) as client:
            await client.dialect()

    with pytest.raises(ConfigurationError, match="The proxy refused the request"):
        asyncio.run(asynchronously())
    assert all(r.method == "GET" for r in refusing_proxy.requests)  # nothing was started through it


def test_no_error_of_these_kinds_escapes_as_anything_but_an_openhands_error(quick: LocalOpenHandsServer) -> None:
    """The sync driver's loop as a whole: a hostile answer to every step of a start and its reads."""
    with OpenHandsClient(SECRET, base_url=quick.base_url, retry=ONCE) as client:
        for body in (DEEP, b"[" * TOO_DEEP + b"]" * TOO_DEEP, b"{" * 50_000):
            quick.inject(method="GET", status=200, body=body, times=2)
            with pytest.raises(OpenHandsError):
                client.dialect()
