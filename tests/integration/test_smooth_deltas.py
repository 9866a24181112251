"""An upstream's burst (a paragraph in one chunk) reaches the SDK as several small deltas."""

import json
from typing import Any

import pytest
from anthropic.types import MessageParam

from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import chunk, http_request, reply_stream
from tests.integration.conftest import MakeProxy

PARAGRAPH = ("Café au lait, naïve façade: the résumé says 👩‍💻 works 🇫🇷 and 👍🏽 ok. " * 9)[:600]
HI: list[MessageParam] = [{"role": "user", "content": "hi"}]
THOUGHT = "Let me think about what the user wants here, step by step, carefully. " * 4


def _burst(body: dict[str, Any]) -> list[Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 150, "total_tokens": 155}
    return [
        chunk(body, {"role": "assistant", "reasoning_content": THOUGHT}),
        chunk(body, {"content": PARAGRAPH}),
        chunk(body, {}, finish_reason="stop"),
        chunk(body, None, usage=usage),
        "[DONE]",
    ]


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "as-sent"])
def test_a_burst_is_split_and_the_sdk_text_is_the_upstreams(
    make_proxy: MakeProxy, smooth: bool
) -> None:
    proxy = make_proxy(smooth_deltas=smooth)
    proxy.upstream.enqueue(reply_stream(_burst), reply_stream(_burst))
    request = {"model": "claude-sonnet-4-6", "max_tokens": 1000, "messages": HI, "stream": True}
    status, _, raw = http_request(
        proxy.url + "/v1/messages",
        "POST",
        body=json.dumps(request).encode(),
        headers={"x-api-key": proxy.client_key, "content-type": "application/json"},
    )
    assert status == 200
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line[:6] == "data: "]
    assert_anthropic_grammar(events)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    texts = [d["text"] for d in deltas if d["type"] == "text_delta"]
    thoughts = [d["thinking"] for d in deltas if d["type"] == "thinking_delta"]
    assert "".join(texts) == PARAGRAPH and "".join(thoughts) == THOUGHT
    if smooth:
        assert len(texts) >= 600 // 24 and max(map(len, texts)) <= 24
        assert len(thoughts) > 1
    else:
        assert texts == [PARAGRAPH] and thoughts == [THOUGHT]

    # The official SDK's own accumulation gives back the upstream's text exactly.
    with proxy.client().messages.stream(
        model="claude-sonnet-4-6", max_tokens=1000, messages=HI
    ) as stream:
        final = stream.get_final_message()
    blocks = {block.type: block for block in final.content}
    assert blocks["text"].text == PARAGRAPH  # type: ignore[union-attr]
    assert blocks["thinking"].thinking == THOUGHT  # type: ignore[union-attr]
