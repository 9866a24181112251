"""Fake search APIs and web pages on loopback, answering like the real ones.

- `/tavily/search`: Tavily's POST /search (Bearer key; its 401, 429 and 432 bodies).
- `/brave/res/v1/web/search`: Brave's web search (X-Subscription-Token; its 422 for a
  bad token and its 429, as `{"type": "ErrorResponse", "error": {...}}`).
- `/searx/search`: a SearXNG instance with JSON enabled; `/searx-html/search` one with
  only HTML, which answers a JSON search 403 as SearXNG does.
- `/pages/...`: pages for the fetcher (an article with chrome, redirects, a huge page,
  a slow page, a PDF, plain text, a redirect to a private address).

None of the search fakes apply domain filters: what the client filters, it filters itself.
Every request is recorded (`FakeWeb.requests`) for the tests to look at.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TAVILY_KEY = "tvly-dev-canary-3f9a1c"
BRAVE_KEY = "BSA-canary-7e21d0"
# Loopback stand-ins: the fetcher is told 127.0.0.2 is "the internet".
PUBLIC, PRIVATE = "127.0.0.2", "127.0.0.1"

RESULTS = [
    ("https://docs.python.org/3/library/asyncio.html", "asyncio — Asynchronous I/O"),
    ("https://www.reddit.com/r/Python/comments/1/asyncio", "asyncio tips : r/Python"),
    ("https://realpython.com/async-io-python/", "Async IO in Python"),
    ("https://python.org/about/", "About Python"),
    ("https://stackoverflow.com/questions/1/asyncio", "How do I use asyncio?"),
    ("https://blog.example.com/asyncio", "An asyncio blog post"),
]

ARTICLE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Understanding  asyncio | Example Blog</title>
<style>body { color: red }</style><script>trackEverything();</script></head>
<body>
<header class="site"><nav><a href="/">Home</a> <a href="/about">About us</a></nav></header>
<aside>Subscribe to our newsletter!</aside>
<main><article>
<h1>Understanding asyncio</h1>
<p>The event loop runs <strong>one task</strong> at a time; see
<a href="https://docs.python.org/3/library/asyncio.html">the docs</a>.</p>
<img src="/loop.png" alt="A diagram of the loop">
<h2>Tasks</h2>
<ul><li>create_task schedules</li><li>await yields</li></ul>
<pre><code>asyncio.run(main())</code></pre>
<p>Caf\u00e9 society loves coroutines.</p>
</article></main>
<footer>Copyright 2026 Example Blog. Cookie settings.</footer>
</body></html>"""


def pdf_with_text(text: str, title: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, with a Title in its info dictionary."""
    content = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R"
        b"/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length %d>>stream\n%s\nendstream" % (len(content), content),
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
        f"<</Title({title})>>".encode(),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer<</Size %d/Root 1 0 R/Info 6 0 R>>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


PDF = pdf_with_text("Hello from a PDF", "A Paper")
SCAN_PDF = pdf_with_text("", "Scan")  # a page without text, as a scan without OCR reads


@dataclass
class FakeWeb:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends slow answers

    def url(self, path: str, address: str = PUBLIC) -> str:
        return f"http://{address}:{self.port}{path}"


def _brave_error(status: int, code: str, detail: str) -> web.Response:
    body = {
        "type": "ErrorResponse",
        "error": {"id": "8e0c", "status": status, "code": code, "detail": detail, "meta": {}},
        "time": 1763720000,
    }
    return web.json_response(body, status=status)


def _results(query: str, *, snippet_key: str) -> list[dict[str, Any]]:
    return [
        {"url": url, "title": title, snippet_key: f"About {query}: {title}."}
        for url, title in RESULTS
    ]


def _app(fake: FakeWeb) -> web.Application:
    async def tavily(request: web.Request) -> web.Response:
        body = await request.json()
        fake.requests.append({"api": "tavily", "headers": dict(request.headers), "body": body})
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {TAVILY_KEY}":
            sent = auth.removeprefix("Bearer ")  # real APIs do echo keys back at times
            return web.json_response(
                {"detail": {"error": f"Unauthorized: missing or invalid API key ({sent})."}},
                status=401,
            )
        if body["query"] == "too many":
            return web.json_response(
                {"detail": {"error": "Rate limit exceeded. Please try again later."}}, status=429
            )
        if body["query"] == "plan":
            return web.json_response(
                {"detail": {"error": "This request exceeds your plan's set usage limit."}},
                status=432,
            )
        if body["query"] == "bad request":
            return web.json_response({"detail": {"error": "Invalid search depth."}}, status=400)
        if body["query"] == "slow":
            await fake.release.wait()
        results = _results(body["query"], snippet_key="content")
        results[0]["published_date"] = "2026-11-19"
        return web.json_response(
            {
                "query": body["query"],
                "answer": None,
                "images": [],
                "results": [dict(r, score=0.9, raw_content=None) for r in results],
                "response_time": 0.8,
            }
        )

    async def brave(request: web.Request) -> web.Response:
        query = dict(request.query)
        fake.requests.append({"api": "brave", "headers": dict(request.headers), "query": query})
        if request.headers.get("X-Subscription-Token") != BRAVE_KEY:
            return _brave_error(
                422, "SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid."
            )
        if query["q"] == "too many":
            return _brave_error(429, "RATE_LIMITED", "Request rate limit exceeded for plan.")
        results = _results(query["q"], snippet_key="description")
        results[0]["age"] = "2 days ago"
        return web.json_response(
            {
                "type": "search",
                "query": {"original": query["q"]},
                "web": {"type": "search", "results": results, "family_friendly": True},
            }
        )

    async def searx(request: web.Request) -> web.Response:
        query = dict(request.query)
        fake.requests.append({"api": "searxng", "headers": dict(request.headers), "query": query})
        if request.match_info["instance"] == "searx-html" or query.get("format") != "json":
            return web.Response(status=403, text="<h1>403 Forbidden</h1>", content_type="text/html")
        if query["q"] == "boom":
            return web.Response(status=502, text="Bad Gateway")
        if query["q"] == "not json":
            return web.Response(text="<html>results</html>", content_type="text/html")
        if query["q"] == "drop":
            assert request.transport is not None
            request.transport.close()  # the connection dies mid-answer
            return web.Response()
        results = [
            dict(r, engine="duckduckgo", publishedDate=None)
            for r in _results(query["q"], snippet_key="content")
        ]
        results.insert(0, {"url": "", "title": "an answer box with no page", "content": "?"})
        return web.json_response(
            {
                "query": query["q"],
                "number_of_results": 0,
                "results": results,
                "answers": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    async def article(request: web.Request) -> web.Response:
        return web.Response(text=ARTICLE, content_type="text/html", charset="utf-8")

    async def latin1(request: web.Request) -> web.Response:
        page = "<html><head><title>Ol\u00e9</title></head><body><p>Se\u00f1or</p></body></html>"
        return web.Response(
            body=page.encode("latin-1"), headers={"Content-Type": "text/html; charset=ISO-8859-1"}
        )

    async def titled(request: web.Request) -> web.Response:
        heads = {
            "og": '<meta property="og:title" content="From Open Graph">',
            "h1": "",
        }
        page = f"<html><head>{heads[request.match_info['how']]}</head><body><h1>From  the h1</h1>"
        return web.Response(text=page + "<p>x</p></body></html>", content_type="text/html")

    async def untyped(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        body = b"<!DOCTYPE html><title>Sniffed</title><p>hi" if kind == "html" else b"just text"
        return web.Response(body=body, headers={"Content-Type": ""})

    async def odd_charset(request: web.Request) -> web.Response:
        return web.Response(
            body="caf\u00e9".encode(), headers={"Content-Type": "text/plain; charset=klingon"}
        )

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="line one\nline two\n", content_type="text/plain")

    async def long_page(request: web.Request) -> web.Response:
        paragraphs = "".join(f"<p>{f'Paragraph {i} says something. ' * 5}</p>" for i in range(400))
        return web.Response(
            text=f"<html><body>{paragraphs}</body></html>", content_type="text/html"
        )

    async def unclosed(request: web.Request) -> web.Response:
        # Valid HTML (a <p> ends where the next begins) that html.parser nests 3000 deep.
        paragraphs = "".join(f"<p>Paragraph {i}." for i in range(3000))
        return web.Response(text=f"<title>Deep</title>{paragraphs}", content_type="text/html")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        for _ in range(64):  # 4 MB with no Content-Length: only counting stops it
            await response.write(b"<p>" + b"x" * 65536 + b"</p>")
        return response

    async def slow(request: web.Request) -> web.Response:
        await fake.release.wait()
        return web.Response(text="<p>late</p>", content_type="text/html")

    async def pdf(request: web.Request) -> web.Response:
        body = {"paper": PDF, "scan": SCAN_PDF, "broken": b"%PDF-1.7\n\x00garbage"}
        return web.Response(body=body[request.match_info["name"]], content_type="application/pdf")

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * 4, headers={"Content-Type": ""})

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        target = "/pages/article" if hops == 0 else f"/pages/redirect/{hops - 1}"
        raise web.HTTPFound(target)

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound(fake.url("/pages/article", PRIVATE))

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="not here")

    app = web.Application()
    app.router.add_post("/tavily/search", tavily)
    app.router.add_get("/brave/res/v1/web/search", brave)
    app.router.add_get("/{instance:searx|searx-html}/search", searx)
    app.router.add_get("/pages/article", article)
    app.router.add_get("/pages/latin1", latin1)
    app.router.add_get("/pages/plain", plain)
    app.router.add_get("/pages/titled/{how}", titled)
    app.router.add_get("/pages/untyped/{kind}", untyped)
    app.router.add_get("/pages/odd-charset", odd_charset)
    app.router.add_get("/pages/long", long_page)
    app.router.add_get("/pages/huge", huge)
    app.router.add_get("/pages/unclosed", unclosed)
    app.router.add_get("/pages/slow", slow)
    app.router.add_get("/pages/{name}.pdf", pdf)
    app.router.add_get("/pages/blob", binary)
    app.router.add_get("/pages/redirect/{hops}", redirect)
    app.router.add_get("/pages/to-private", to_private)
    app.router.add_get("/pages/missing", missing)
    return app


@asynccontextmanager
async def running_fake_web() -> AsyncIterator[FakeWeb]:
    """The fake on one port of both loopback stand-ins, on the current loop."""
    with socket.socket() as probe:
        probe.bind((PRIVATE, 0))
        port = probe.getsockname()[1]
    fake = FakeWeb(port)
    runner = web.AppRunner(_app(fake), shutdown_timeout=0.5)
    await runner.setup()
    for address in (PUBLIC, PRIVATE):
        await web.TCPSite(runner, address, port).start()
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()
