"""Behind a corporate proxy or HTTPS inspection: the environment's proxy only when asked for, a CA bundle setting,
and one line each for a proxy that wants credentials (407) and a TLS failure. Real sockets on 127.0.0.1: a second
local server plays the proxy (a proxied plain-http request is a normal request with an absolute URL), and the local
server behind TLS uses a certificate from a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import RetryPolicy
from openhands_magics.errors import ConfigurationError, ProtocolError, TransportError
from openhands_magics.models import Conversation
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import FAST, SECRET

ONCE = RetryPolicy(attempts=1)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOpenHandsServer]:
    """A "proxy" named by HTTP_PROXY, with nothing excluded by NO_PROXY."""
    with LocalOpenHandsServer(SECRET, timeline=FAST) as server:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.base_url)
        yield server


def test_the_environments_proxy_is_ignored_unless_asked_for(proxy: LocalOpenHandsServer, dead_url: str) -> None:
    with OpenHandsClient(SECRET, base_url=dead_url, api="v1", retry=ONCE) as client:
        with pytest.raises(TransportError, match="Could not connect"):
            client.start_conversation("hi")
    assert proxy.requests == []  # the proxy never saw the key


def test_with_the_opt_in_requests_go_through_the_environments_proxy(
    proxy: LocalOpenHandsServer, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenHandsClient(SECRET, base_url=dead_url, api="v1", use_env_proxy=True) as client:
        started = client.start_conversation("through the proxy")
    assert started.start_task_id in proxy.task_ids()

    async def through_the_async_client() -> None:  # the poller's client takes the same route
        async with AsyncOpenHandsClient(SECRET, base_url=dead_url, api="v1", use_env_proxy=True) as client:
            assert (await client.refresh(started)).start_task_id == started.start_task_id

    asyncio.run(through_the_async_client())
    monkeypatch.setenv("OPENHANDS_USE_ENV_PROXY", "1")  # the same, from the environment
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # ...which NO_PROXY still overrides
    with OpenHandsClient(SECRET, base_url=dead_url, api="v1", retry=ONCE) as client:
        assert client.proxy is None


def test_a_proxy_that_wants_credentials_is_one_line_saying_so(proxy: LocalOpenHandsServer, dead_url: str) -> None:
    proxy.inject(status=407, body=b"", headers={"Proxy-Authenticate": 'Basic realm="corp"'})
    with OpenHandsClient(SECRET, base_url=dead_url, api="v1", use_env_proxy=True, retry=ONCE) as client:
        with pytest.raises(ConfigurationError, match=r"The proxy refused the request \(HTTP 407.*user and password"):
            client.start_conversation("hi")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalOpenHandsServer, Path]]:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "company-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    with LocalOpenHandsServer(SECRET, timeline=FAST) as server:
        server._httpd.socket = context.wrap_socket(server._httpd.socket, server_side=True)  # noqa: SLF001
        yield server, ca_file


def test_a_tls_failure_is_one_line_pointing_at_the_ca_bundle_setting(
    tls_server: tuple[LocalOpenHandsServer, Path],
) -> None:
    server, _ = tls_server
    url = server.base_url.replace("http://", "https://")
    with OpenHandsClient(SECRET, base_url=url, api="v1", retry=ONCE) as client:
        with pytest.raises(
            TransportError, match=r"TLS verification of https://127.0.0.1:\d+ failed .*ca_bundle"
        ) as caught:
            client.start_conversation("hi")
    assert caught.value.request_sent is False and "\n" not in str(caught.value)


def test_a_company_ca_bundle_makes_tls_work(
    tls_server: tuple[LocalOpenHandsServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = tls_server
    url = server.base_url.replace("http://", "https://")
    with OpenHandsClient(SECRET, base_url=url, api="v1", ca_bundle=str(ca_file)) as client:
        assert client.start_conversation("hi").start_task_id in server.task_ids()
    monkeypatch.setenv("OPENHANDS_CA_BUNDLE", str(ca_file))
    with OpenHandsClient(SECRET, base_url=url, api="v1") as client:
        assert client.start_conversation("again").start_task_id in server.task_ids()
    with pytest.raises(ConfigurationError, match="is not a readable file"):
        OpenHandsClient(SECRET, base_url=url, ca_bundle=str(ca_file) + ".missing")


def test_an_async_exchange_cancelled_as_its_answer_arrives_ends_cancelled_instead_of_going_on() -> None:
    """Python 3.11's ``wait_for`` swallows this cancellation (the stopping I/O thread then waited on a poller that went
    on to its next read); the exchange's deadline must not."""
    from openhands_magics._transport import _within

    async def main() -> bool:
        answered = asyncio.Event()

        async def answer() -> str:
            await answered.wait()
            return "answer"

        async def caller() -> None:
            await _within(10.0, answer())
            await asyncio.sleep(10)  # (where a swallowed cancellation would leave it)

        task = asyncio.create_task(caller())
        await asyncio.sleep(0.01)
        answered.set()
        task.cancel()  # in the same turn of the loop as the answer
        done, _ = await asyncio.wait({task}, timeout=2)
        return task in done and task.cancelled()

    assert asyncio.run(main())


def test_answers_a_proxy_gzipped_are_read_as_the_server_sent_them_by_both_clients() -> None:
    with LocalOpenHandsServer(SECRET, timeline=FAST, compress=True) as server:
        raw = httpx.get(
            f"{server.base_url}/api/v1/app-conversations/search", headers={"Authorization": f"Bearer {SECRET}"}
        )
        assert raw.headers["content-encoding"] == "gzip"  # (what the clients below are given)
        with OpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE) as client:
            started = client.start_conversation("Clean up the CSV loader", repository="octo/loader")
            assert started.start_task_id and started.selected_repository == "octo/loader"
            assert client.refresh(started).start_task_id == started.start_task_id

        async def read() -> str | None:
            async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE) as client:
                return (await client.refresh(started)).start_task_id

        assert asyncio.run(read()) == started.start_task_id


def test_a_gzipped_answer_counts_at_its_decoded_size_against_the_limit() -> None:
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")  # 5 MB of JSON in a few kilobytes
    with LocalOpenHandsServer(SECRET, timeline=FAST) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE, max_answer_bytes=1_000_000) as client:
            started = client.start_conversation("Clean up the CSV loader")
            server.inject(method="GET", status=200, body=bomb, headers={"Content-Encoding": "gzip"})
            with pytest.raises(ProtocolError, match="larger than 1 MB"):
                client.refresh(started)
    assert len(bomb) < 10_000


QUICK_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)


def test_a_cookie_an_answer_sets_is_sent_back_by_both_clients() -> None:
    # A load balancer in front of the server keeps a client on one backend with a cookie: the retry after its 503
    # goes back with it, from the blocking client and from the poller's.
    sticky = {"Set-Cookie": "AWSALB=backend-2; Path=/"}
    with LocalOpenHandsServer(SECRET, timeline=FAST) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url, retry=QUICK_RETRY) as client:
            started = client.start_conversation("Clean up the CSV loader")
            server.inject(method="GET", status=503, body={"detail": "busy"}, headers=sticky)
            assert client.refresh(started).start_task_id == started.start_task_id

        async def read() -> None:
            async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=QUICK_RETRY) as client:
                server.inject(method="GET", status=503, body={"detail": "busy"}, headers=sticky)
                await client.refresh(started)

        asyncio.run(read())
        reads = [r for r in server.requests if r.path.endswith("/start-tasks")]
    assert [r.headers.get("cookie") for r in reads] == [None, "AWSALB=backend-2", None, "AWSALB=backend-2"]


def test_an_answer_that_sets_no_cookie_is_not_read_through_the_cookie_jar(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx reads every answer through http.cookiejar (all its headers copied into an email message first): a sixth
    # of a POST's own work, for answers the app server never puts a cookie in.
    import http.cookiejar

    read: list[object] = []
    extract = http.cookiejar.CookieJar.extract_cookies
    monkeypatch.setattr(
        http.cookiejar.CookieJar, "extract_cookies", lambda jar, *a: (read.append(a), extract(jar, *a))[1]
    )
    with LocalOpenHandsServer(SECRET, timeline=FAST) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url, retry=ONCE) as client:
            client.refresh(client.start_conversation("Clean up the CSV loader"))
        with httpx.Client() as plain:  # (the count is real: httpx's own client does read through it)
            plain.get(f"{server.base_url}/api/v1/app-conversations/search")
    assert len(read) == 1


@pytest.mark.parametrize("base_url", ["https://oh.example", "https://oh.example/openhands", "https://oh.example/a/b/"])
def test_paths_are_joined_to_a_base_url_with_a_path_as_httpx_joins_them(base_url: str) -> None:
    seen: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url).split("?")[0])
        return httpx.Response(200, json=[None])

    unknown = [Conversation("0" * 32)]
    for url in (base_url, base_url, "https://other.example/x"):  # (the second: the joined URL remembered)
        with OpenHandsClient(SECRET, base_url=url, api="v1", transport=httpx.MockTransport(server)) as client:
            assert client.read(unknown) == [None]
    expected = [
        str(httpx.Client(base_url=url).build_request("GET", "/api/v1/app-conversations").url)
        for url in (base_url, base_url, "https://other.example/x")
    ]
    assert seen == expected
