"""Learning from an upstream 400/422 which part of the request a model refused.

The messages are real answers, quoted short from public issues and code (the
source is named beside each). A few cases marked "shape of" keep a real
answer's wording and put one of our fields where the original named another.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from app.core.capabilities import ModelQuirks, ReasoningSwitch
from app.core.errors import extract_upstream_message
from app.core.quirk_learning import (
    LEARNED_QUIRK_BY_REJECTION,
    REJECTIONS_READ_FROM_500,
    SENT_KEYS_BY_REJECTION,
    Rejection,
    already_learned,
    learn,
    rejection_from_error,
)
from app.core.request_map import to_openai_request
from app.core.request_validation import validate_messages_request
from app.core.tiers import ModelRoute

FIXTURES = Path(__file__).parents[2] / "fixtures" / "upstream_bodies"
IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}

# A ChatRequest carrying every part a model may refuse.
SENT_ALL: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE_PART]},
    ],
    "max_tokens": 100,
    "stream": True,
    "stream_options": {"include_usage": True},
    "top_k": 20,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "chat_template_kwargs": {"thinking": True},
    "reasoning_effort": "low",
}
# The same conversation with none of them.
SENT_PLAIN: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "what is this?"}],
    "max_tokens": 100,
}

REJECTION_CASES = [
    # ---- naming a field
    pytest.param(
        400,
        "CAPIError: 400 Unrecognized request argument supplied: reasoning_effort",
        Rejection.REASONING_EFFORT,
        id="copilot-unrecognized-argument",  # formulahendry/wechat-acp#16
    ),
    pytest.param(
        400,
        "{'error': {'message': \"Unsupported parameter: 'parallel_tool_calls' is not supported "
        "with this model.\", 'type': 'invalid_request_error', 'param': 'parallel_tool_calls', "
        "'code': 'unsupported_parameter'}}",
        Rejection.PARALLEL_TOOL_CALLS,
        id="openai-unsupported-parameter",  # evalstate/fast-agent#279
    ),
    pytest.param(
        400,
        "Unknown parameter: 'reasoning_effort'.",
        Rejection.REASONING_EFFORT,
        id="openai-unknown-parameter",  # shape of teabranch/open-responses-server#41 ('reasoning')
    ),
    pytest.param(
        400,
        "Validation: Unsupported parameter(s): `top_k`",
        Rejection.TOP_K,
        id="nim-unsupported-parameters",  # shape of diegosouzapw/OmniRoute#848 (prompt_cache_key)
    ),
    pytest.param(
        400,
        "Validation: Unsupported parameter(s): `prompt_cache_key`, `top_k`",
        Rejection.TOP_K,
        id="nim-unsupported-parameters-list",  # a list: the first of ours counts
    ),
    pytest.param(
        400,
        '{"object":"Error","detail":[{"type":"extra_forbidden","loc":["body","tools"],'
        '"msg":"Extra inputs are not permitted","input":[]}]}',
        Rejection.TOOLS,
        id="mistral-extra-forbidden-json",  # partITech/php-mistral#76
    ),
    pytest.param(
        400,
        "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs "
        "are not permitted', 'input': {'include_usage': True}}]",
        Rejection.STREAM_OPTIONS,
        id="vllm-extra-forbidden-repr",  # gpustack/gpustack#429, field spelt right
    ),
    pytest.param(
        400,
        '{"error":"[{\\"type\\": \\"extra_forbidden\\", \\"loc\\": [\\"body\\", \\"top_k\\"]}]"}',
        Rejection.TOP_K,
        id="extra-forbidden-json-escaped",  # an error string inside a JSON string
    ),
    pytest.param(
        422,
        "body -> top_k\n  Extra inputs are not permitted (type=extra_forbidden)",
        Rejection.TOP_K,
        id="nim-422-problem-detail",  # shape of BerriAI/litellm#4558 (frequency_penalty)
    ),
    pytest.param(
        400,
        "1 validation error for ChatCompletionRequest\nparallel_tool_calls\n  Extra inputs are "
        "not permitted [type=extra_forbidden, input_value=False, input_type=bool]",
        Rejection.PARALLEL_TOOL_CALLS,
        id="pydantic-v2-str",  # shape of vllm-project/vllm#12864 (messages.0.user.name)
    ),
    pytest.param(
        400,
        "Error: 400 Extra inputs are not permitted, field: 'stream_options'",
        Rejection.STREAM_OPTIONS,
        id="fireworks-field",  # FlowiseAI/Flowise#2866
    ),
    pytest.param(
        400,
        "{'error': {'message': 'chat_template is not supported for Mistral tokenizers.', "
        "'type': 'BadRequestError'}}",
        Rejection.CHAT_TEMPLATE_KWARGS,
        id="vllm-mistral-tokenizer",  # Alishahryar1/free-claude-code#89, vLLM's own check
    ),
    pytest.param(
        400,
        'Invalid JSON payload received. Unknown name "chat_template_kwargs": Cannot find field.',
        Rejection.CHAT_TEMPLATE_KWARGS,
        id="gemini-unknown-name",  # shape of HELPMEEADICE/doge-code#16 (enable_thinking)
    ),
    pytest.param(
        400,
        'Invalid JSON payload received. Unknown name "enable_thinking": Cannot find field.',
        Rejection.CHAT_TEMPLATE_KWARGS,
        id="gemini-unknown-name-inner-key",  # HELPMEEADICE/doge-code#16
    ),
    # ---- naming a capability
    pytest.param(
        400,
        '{"object":"error","message":"\\"auto\\" tool choice requires --enable-auto-tool-choice '
        'and --tool-call-parser to be set","type":"BadRequestError","param":null,"code":400}',
        Rejection.TOOLS,
        id="vllm-no-tool-parser",  # langchain4j/langchain4j#3475
    ),
    pytest.param(
        400,
        '{"error":{"message":"stablelm2:latest does not support tools","type":"api_error",'
        '"param":null,"code":null}}',
        Rejection.TOOLS,
        id="ollama-openai-api",  # ollama/ollama#6027
    ),
    pytest.param(
        400,
        '{"error":"registry.ollama.ai/library/Qwen3.5:0.8b does not support tools"}',
        Rejection.TOOLS,
        id="ollama-native",  # ollama/ollama#14795
    ),
    pytest.param(
        404,
        "No endpoints found that support tool use. To learn more about provider routing, visit: "
        "https://openrouter.ai/docs/provider-routing",
        Rejection.TOOLS,
        id="openrouter-404-tools",  # michelle-avery/openai-compatible-conversation#25
    ),
    pytest.param(
        400,
        "GLM-5.2 is not a multimodal model",
        Rejection.IMAGES,
        id="vllm-not-multimodal",  # quoted in a public install script (index id 61377616789)
    ),
    pytest.param(
        400,
        "At most 0 image(s) may be provided in one prompt. Set `--limit-mm-per-prompt` to "
        "increase this limit.",
        Rejection.IMAGES,
        id="vllm-zero-images",  # vLLM's --language-model-only answer, quoted in public docs
    ),
    pytest.param(
        400,
        "this model does not support image input (ref: b8bd630e-4a39-4b57-82af-9158ee9d5703)",
        Rejection.IMAGES,
        id="ollama-cloud-images",  # ollama/ollama#17301
    ),
    pytest.param(
        400,
        "Model do not support image input. Request id: 021772629268392a292fc2ba91e79c594f032f",
        Rejection.IMAGES,
        id="volcengine-images",  # tencent-connect/openclaw-qqbot#111
    ),
    pytest.param(
        404,
        "No endpoints found that support image input",
        Rejection.IMAGES,
        id="openrouter-404-images",  # nexu-io/nexu#733
    ),
    pytest.param(
        400,
        "messages.content.type is invalid, allowed values: ['text']",
        Rejection.IMAGES,
        id="text-only-part-types",  # quoted in a public client (index id 63098269144)
    ),
]

NOT_A_REJECTION_CASES = [
    pytest.param(
        400,
        "Validation: Unsupported parameter(s): `prompt_cache_key`",
        id="nim-field-we-never-send",  # diegosouzapw/OmniRoute#848
    ),
    pytest.param(
        400,
        "{'message': 'Validation: Unsupported parameter(s): reasoning_budget', 'type': 'Bad "
        "Request', 'code': 400}",
        id="nim-reasoning-budget",  # Alishahryar1/free-claude-code#127
    ),
    pytest.param(
        422,
        "body -> frequency_penalty\n  Extra inputs are not permitted (type=extra_forbidden)\n"
        "body -> presence_penalty\n  Extra inputs are not permitted (type=extra_forbidden)",
        id="nim-penalties",  # BerriAI/litellm#4558
    ),
    pytest.param(
        400,
        "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_otpions'), 'msg': 'Extra inputs "
        "are not permitted', 'input': {'include_usage': True}}]",
        id="misspelt-field",  # gpustack/gpustack#429, as reported
    ),
    pytest.param(
        400,
        "1 validation error for ChatCompletionRequest\nmessages.0.user.name\n  Extra inputs are "
        "not permitted [type=extra_forbidden, input_value='bob', input_type=str]",
        id="nested-field",  # vllm-project/vllm#12864
    ),
    pytest.param(
        400,
        "{'object': 'error', 'message': 'At most 1 image(s) may be provided in one request.', "
        "'type': 'BadRequestError', 'param': None, 'code': 400}",
        id="image-count-limit",  # vllm-project/vllm#13513: too many, not none
    ),
    pytest.param(
        500,
        "{'error': {'code': 500, 'message': 'Unsupported param: tools', 'type': 'server_error'}}",
        id="status-500",  # QwenLM/Qwen3#822: a server error is not a refusal
    ),
    pytest.param(404, "Function 'abc': Not found for account 'xyz'", id="plain-404"),
    pytest.param(429, "Too Many Requests", id="rate-limit"),
]


@pytest.mark.parametrize(("status", "message", "rejection"), REJECTION_CASES)
def test_rejection_from_real_wordings(status: int, message: str, rejection: Rejection) -> None:
    assert rejection_from_error(status, message, SENT_ALL) is rejection


@pytest.mark.parametrize(("status", "message", "rejection"), REJECTION_CASES)
def test_only_what_was_sent_can_be_blamed(status: int, message: str, rejection: Rejection) -> None:
    assert rejection_from_error(status, message, SENT_PLAIN) is None
    unsent = {k: v for k, v in SENT_ALL.items() if k not in SENT_KEYS_BY_REJECTION[rejection]}
    if rejection is Rejection.IMAGES:
        unsent["messages"] = SENT_PLAIN["messages"]
    assert rejection_from_error(status, message, unsent) is None


@pytest.mark.parametrize(("status", "message"), NOT_A_REJECTION_CASES)
def test_errors_that_blame_nothing_we_sent(status: int, message: str) -> None:
    assert rejection_from_error(status, message, SENT_ALL) is None


@pytest.mark.parametrize(
    "fixture",
    [
        "vllm_400_max-tokens-negative_error-envelope.json",
        "vllm_400_max-tokens-negative_legacy-object-error.json",
        "nim_400_degraded-function.json",
    ],
)
def test_recorded_400s_of_other_kinds_blame_nothing(fixture: str) -> None:
    body = (FIXTURES / fixture).read_text(encoding="utf-8")
    assert rejection_from_error(400, body, SENT_ALL) is None


def test_of_two_named_fields_the_first_one_sent_is_blamed() -> None:
    # Shape of BerriAI/litellm#4558: one line per refused field.
    message = (
        "body -> top_k\n  Extra inputs are not permitted (type=extra_forbidden)\n"
        "body -> chat_template_kwargs\n  Extra inputs are not permitted (type=extra_forbidden)"
    )
    assert rejection_from_error(422, message, SENT_ALL) is Rejection.TOP_K
    without_top_k = {k: v for k, v in SENT_ALL.items() if k != "top_k"}
    assert rejection_from_error(422, message, without_top_k) is Rejection.CHAT_TEMPLATE_KWARGS


def test_tool_choice_alone_counts_as_tools_sent() -> None:
    sent = {**SENT_PLAIN, "tool_choice": "none"}
    message = "llama3 does not support tools"  # ollama/ollama#5793
    assert rejection_from_error(400, message, sent) is Rejection.TOOLS


def test_images_are_looked_for_in_every_message() -> None:
    message = "GLM-5.2 is not a multimodal model"
    odd = {"messages": ["not a message", {"role": "user"}, {"content": [1, {"type": "text"}]}]}
    assert rejection_from_error(400, message, odd) is None
    assert rejection_from_error(400, message, {"messages": None}) is None
    later = {"messages": [{"role": "user", "content": "hi"}, {"content": [IMAGE_PART]}]}
    assert rejection_from_error(400, message, later) is Rejection.IMAGES


# ------------------------------------------------------------------ learn


@pytest.mark.parametrize("rejection", list(Rejection))
def test_learn_turns_off_exactly_the_refused_part(rejection: Rejection) -> None:
    before = ModelQuirks(ReasoningSwitch.TEMPLATE_THINKING, 8192, 131072, accepts_top_k=True)
    after = learn(before, rejection)
    field = LEARNED_QUIRK_BY_REJECTION[rejection]
    assert getattr(after, field) is False
    assert dataclasses.replace(after, **{field: getattr(before, field)}) == before
    assert not already_learned(before, rejection)
    assert already_learned(after, rejection)
    assert learn(after, rejection) == after


def test_tables_cover_every_rejection() -> None:
    assert set(LEARNED_QUIRK_BY_REJECTION) == set(Rejection)
    assert set(SENT_KEYS_BY_REJECTION) == set(Rejection)
    fields = {f.name for f in dataclasses.fields(ModelQuirks)}
    assert set(LEARNED_QUIRK_BY_REJECTION.values()) <= fields


def test_rejection_values_read_well_in_the_repair_log() -> None:
    assert f"repair: upstream rejected {Rejection.TOP_K}; retried without it" == (
        "repair: upstream rejected top_k; retried without it"
    )


# One real wording per rejection, for the round trip below.
MESSAGE_BY_REJECTION: dict[Rejection, str] = {
    Rejection.TOP_K: "Validation: Unsupported parameter(s): `top_k`",
    Rejection.CHAT_TEMPLATE_KWARGS: "chat_template is not supported for Mistral tokenizers.",
    Rejection.REASONING_EFFORT: "Unrecognized request argument supplied: reasoning_effort",
    Rejection.TOOLS: "stablelm2:latest does not support tools",
    Rejection.IMAGES: "At most 0 image(s) may be provided in one prompt.",
    Rejection.PARALLEL_TOOL_CALLS: (
        "Unsupported parameter: 'parallel_tool_calls' is not supported with this model."
    ),
    Rejection.STREAM_OPTIONS: "Extra inputs are not permitted, field: 'stream_options'",
}
QUIRKS_THAT_SEND: dict[Rejection, ModelQuirks] = {
    Rejection.TOP_K: ModelQuirks(accepts_top_k=True),
    Rejection.CHAT_TEMPLATE_KWARGS: ModelQuirks(ReasoningSwitch.TEMPLATE_ENABLE_THINKING),
    Rejection.REASONING_EFFORT: ModelQuirks(ReasoningSwitch.REASONING_EFFORT),
}
EVERYTHING_REQUEST: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 1000,
    "stream": True,
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 8000},
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        }
    ],
}


@pytest.mark.parametrize("rejection", [r for r in Rejection if r not in REJECTIONS_READ_FROM_500])
def test_a_learned_rejection_is_never_drawn_again(rejection: Rejection) -> None:
    # The loop the server runs: send, get refused, learn, re-translate, resend.
    request = validate_messages_request(json.loads(json.dumps(EVERYTHING_REQUEST)))
    quirks = QUIRKS_THAT_SEND.get(rejection, ModelQuirks())
    first = to_openai_request(request, ModelRoute("claude-x", "m", quirks))
    assert rejection_from_error(400, MESSAGE_BY_REJECTION[rejection], first) is rejection
    learned = learn(quirks, rejection)
    second = to_openai_request(request, ModelRoute("claude-x", "m", learned))
    assert rejection_from_error(400, MESSAGE_BY_REJECTION[rejection], second) is None


# ------------------------------------------------ llama-cpp-python 500s (issue 18)

# llama-cpp-python 0.3.36, a tool-only assistant turn sent with "content": null.
LLAMA_NULL_CONTENT_500 = (
    "1 validation error for list[...]\n0.typed-dict.content\n"
    "  Input should be a valid string [type=string_type, input_value=None, input_type=NoneType]"
)
# llama-cpp-python 0.3.36 on tool_choice "required": an AssertionError without words.
LLAMA_REQUIRED_500 = (
    '{"error":{"message":"","type":"internal_server_error","param":null,"code":null}}'
)
TOOL_LOOP_REQUEST: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 100,
    "tools": [{"name": "get_time", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any"},
    "messages": [
        {"role": "user", "content": "time?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "noon"}],
        },
    ],
}


LLAMA_BODIES = Path(__file__).parents[2] / "fixtures" / "upstream_bodies"


@pytest.mark.parametrize(
    ("message", "rejection"),
    [
        (LLAMA_NULL_CONTENT_500, Rejection.NULL_CONTENT),
        (LLAMA_REQUIRED_500, Rejection.REQUIRED_TOOL_CHOICE),
        pytest.param(
            extract_upstream_message(
                (LLAMA_BODIES / "llama-cpp-python-0.3.36_500_null-content.json").read_bytes()
            ),
            Rejection.NULL_CONTENT,
            id="recorded-null-content",
        ),
        pytest.param(
            extract_upstream_message(
                (
                    LLAMA_BODIES / "llama-cpp-python-0.3.36_500_tool-choice-required.json"
                ).read_bytes()
            ),
            Rejection.REQUIRED_TOOL_CHOICE,
            id="recorded-required",
        ),
    ],
)
def test_llama_cpp_python_500s_are_learned_and_not_drawn_again(
    message: str, rejection: Rejection
) -> None:
    request = validate_messages_request(json.loads(json.dumps(TOOL_LOOP_REQUEST)))
    first = to_openai_request(request, ModelRoute("claude-x", "m", ModelQuirks()))
    assert rejection_from_error(500, message, first) is rejection
    learned = learn(ModelQuirks(), rejection)
    second = to_openai_request(request, ModelRoute("claude-x", "m", learned))
    assert rejection_from_error(500, message, second) is None


@pytest.mark.parametrize(
    "message",
    [
        "Unsupported param: tools",  # a 500 blames nothing else (QwenLM/Qwen3#822)
        '{"error":{"message":"","type":"internal_server_error"}}',  # required was not sent
    ],
)
def test_other_500s_blame_nothing(message: str) -> None:
    assert rejection_from_error(500, message, SENT_ALL) is None


def test_required_tool_choice_refusal_wordings() -> None:
    sent = {**SENT_PLAIN, "tool_choice": "required"}
    wording = 'tool_choice "required" is not supported'
    assert rejection_from_error(400, wording, sent) is Rejection.REQUIRED_TOOL_CHOICE
