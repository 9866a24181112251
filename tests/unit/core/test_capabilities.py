"""The model-quirks table: NIM ids get their family's quirks; settings override per exact id."""

from typing import Any

import pytest

from app.core.capabilities import (
    QUIRK_FIELDS,
    QUIRKS_BY_MODEL_PATTERN,
    ModelQuirks,
    ReasoningSwitch,
    capability_overrides_from_mapping,
    quirks_for_model,
)

R = ReasoningSwitch
TEXT: dict[str, Any] = {"supports_images": False}
TOOLS_TEXT: dict[str, Any] = {"supports_tools": True, "supports_images": False}
TOOLS_VISION: dict[str, Any] = {"supports_tools": True, "supports_images": True}
NO_TEMPLATE: dict[str, Any] = {"accepts_chat_template_kwargs": False}


def q(
    reasoning: ReasoningSwitch = R.NONE,
    max_output: int | None = None,
    context: int | None = None,
    **fields: Any,
) -> ModelQuirks:
    return ModelQuirks(reasoning, max_output, context, **fields)


# Ids as NVIDIA's hosted catalog spells them (tests/fixtures/upstream_bodies/nim_models_list.json),
# plus a few other providers' spellings of the same families.
QUIRK_CASES = [
    # always reasoning
    ("deepseek-ai/deepseek-r1", q(R.ALWAYS, 32768, 131072, **TEXT)),
    ("deepseek-ai/deepseek-r1-distill-qwen-32b", q(R.ALWAYS, 32768, 131072, **TEXT)),
    ("DeepSeek-AI/DeepSeek-R1", q(R.ALWAYS, 32768, 131072, **TEXT)),  # case-insensitive
    ("qwen/qwq-32b", q(R.ALWAYS, 32768, 131072, **TEXT)),
    ("@cf/qwen/qwq-32b", q(R.ALWAYS, 32768, 131072, **TEXT)),
    # DeepSeek V3.1+
    *(
        (model, q(R.TEMPLATE_THINKING, 32768, 131072, send_reasoning_back=True, **TOOLS_TEXT))
        for model in (
            "deepseek-ai/deepseek-v3.1",
            "deepseek-ai/deepseek-v3.1-terminus",
            "deepseek-ai/deepseek-v3.2",
            "deepseek-ai/deepseek-v4-flash-0731",
        )
    ),
    ("deepseek-ai/deepseek-v3", ModelQuirks()),  # V3 without .1 has no thinking switch
    # Qwen
    ("qwen/qwen3-coder-480b-a35b-instruct", q(R.NONE, 65536, 262144, **TOOLS_TEXT)),
    ("qwen/qwen3-next-80b-a3b-thinking", q(R.ALWAYS, 32768, 262144, **TOOLS_TEXT)),
    ("qwen/qwen3-next-80b-a3b-instruct", q(R.NONE, 32768, 262144, **TOOLS_TEXT)),
    ("qwen/qwen3.5-397b-a17b", q(R.TEMPLATE_ENABLE_THINKING, 32768, 262144, **TOOLS_VISION)),
    ("qwen/qwen3-235b-a22b", q(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, supports_tools=True)),
    ("qwen/qwen2.5-coder-32b-instruct", ModelQuirks()),
    # Nemotron
    ("nvidia/nemotron-nano-12b-v2-vl", q(supports_images=True)),
    ("nvidia/llama-3.1-nemotron-nano-vl-8b-v1", q(supports_images=True)),
    ("nvidia/nemotron-3-nano-omni-30b-a3b-reasoning", q(supports_images=True)),
    ("nvidia/nemotron-3-nano-30b-a3b", q(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, **TOOLS_TEXT)),
    ("nvidia/nemotron-nano-3-30b-a3b", q(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, **TOOLS_TEXT)),
    (
        "nvidia/nemotron-3.5-lightning-30b-a3b",
        q(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, **TOOLS_TEXT),
    ),
    ("nvidia/nemotron-3-super-120b-a12b", ModelQuirks()),  # switch not established
    ("nvidia/llama-3.3-nemotron-super-49b-v1.5", q(R.SLASH_THINK_SYSTEM, 32768, 131072, **TEXT)),
    ("nvidia/nvidia-nemotron-nano-9b-v2", q(R.SLASH_THINK_SYSTEM, 32768, 131072, **TEXT)),
    *(
        (model, q(R.DETAILED_THINKING_SYSTEM, 32768, 131072, **TOOLS_TEXT))
        for model in (
            "nvidia/llama-3.3-nemotron-super-49b-v1",
            "nvidia/llama-3.1-nemotron-ultra-253b-v1",
            "nvidia/llama-3.1-nemotron-nano-8b-v1",
            "nvidia/llama-3.1-nemotron-nano-4b-v1.1",
        )
    ),
    # gpt-oss
    ("openai/gpt-oss-120b", q(R.REASONING_EFFORT, 32768, 131072, **TOOLS_TEXT)),
    ("@cf/openai/gpt-oss-20b", q(R.REASONING_EFFORT, 32768, 131072, **TOOLS_TEXT)),
    # Kimi
    ("moonshotai/kimi-k2-thinking", q(R.ALWAYS, 32768, 262144, **TOOLS_TEXT)),
    ("moonshotai/kimi-k2.5", q(R.TEMPLATE_THINKING, 32768, 262144, **TOOLS_VISION)),
    ("moonshotai/kimi-k2-instruct-0905", q(R.NONE, 32768, 262144, **TOOLS_TEXT)),
    ("moonshotai/kimi-k2-instruct", q(R.NONE, 32768, 131072, **TOOLS_TEXT)),
    # MiniMax
    ("minimaxai/minimax-m2", q(R.ALWAYS, 32768, 196608, **TOOLS_TEXT)),
    ("minimaxai/minimax-m2.5", q(R.ALWAYS, 32768, 196608, **TOOLS_TEXT)),
    # GLM, as NIM spells it (no hyphen) and as others do
    *(
        (model, q(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, **TOOLS_TEXT))
        for model in ("z-ai/glm4.7", "z-ai/glm5", "z-ai/glm-4.6", "zai-org/glm-4.5")
    ),
    ("zai-org/glm-4.5v", q(supports_images=True)),
    ("thudm/chatglm3-6b", ModelQuirks()),
    # Llama
    ("meta/llama-3.2-90b-vision-instruct", q(R.NONE, 4096, 131072, supports_images=True)),
    ("meta/llama-3.3-70b-instruct", q(R.NONE, 4096, 131072, **TEXT)),
    ("meta/llama-3.1-405b-instruct", q(R.NONE, 4096, 131072, **TEXT)),
    ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", q(R.NONE, 4096, 131072, **TEXT)),
    ("meta/llama-4-maverick-17b-128e-instruct", q(R.NONE, 16384, 131072, **TOOLS_VISION)),
    ("meta/llama-4-scout-17b-16e-instruct", q(R.NONE, 16384, 131072, **TOOLS_VISION)),
    # Mistral
    ("mistralai/mistral-medium-3-instruct", q(context=131072, **TOOLS_VISION, **NO_TEMPLATE)),
    (
        "mistralai/mistral-small-3.1-24b-instruct-2503",
        q(context=131072, **TOOLS_VISION, **NO_TEMPLATE),
    ),
    ("mistralai/mistral-large-3-675b-instruct-2512", q(**TOOLS_VISION, **NO_TEMPLATE)),
    ("mistralai/mistral-large-2-instruct", q(context=131072, **TOOLS_TEXT, **NO_TEMPLATE)),
    ("mistralai/codestral-22b-instruct-v0.1", q(context=32768, **TEXT, **NO_TEMPLATE)),
    ("mistralai/devstral-2-123b-instruct-2512", q(supports_tools=True, **NO_TEMPLATE)),
    ("mistralai/mistral-7b-instruct-v0.3", q(**NO_TEMPLATE)),
    ("mistralai/magistral-small-2506", q(**NO_TEMPLATE)),
    # Gemma
    ("google/gemma-3-1b-it", q(context=32768, **TEXT)),
    ("google/gemma-3n-e4b-it", q(context=32768, supports_images=True)),
    ("google/gemma-3-27b-it", q(context=131072, supports_images=True)),
    ("google/gemma-2-9b-it", q(context=8192, **TEXT)),
    ("google/codegemma-7b", q(context=8192, **TEXT)),
    # Phi
    ("microsoft/phi-4-multimodal-instruct", q(context=131072, supports_images=True)),
    ("microsoft/phi-3.5-vision-instruct", q(context=131072, supports_images=True)),
    ("microsoft/phi-4-mini-flash-reasoning", q(R.ALWAYS, context=65536, **TEXT)),
    ("microsoft/phi-4-reasoning-plus", q(R.ALWAYS, context=32768, **TEXT)),
    ("microsoft/phi-4-mini-instruct", q(context=131072, **TOOLS_TEXT)),
    ("microsoft/phi-4", q(context=16384, **TEXT)),
    # other vision-language chat models
    ("nvidia/cosmos-reason2-8b", q(supports_images=True)),
    ("some-vendor/unknown-model", ModelQuirks()),
]


@pytest.mark.parametrize(("model", "quirks"), QUIRK_CASES)
def test_quirks_for_model(model: str, quirks: ModelQuirks) -> None:
    assert quirks_for_model(model) == quirks


def test_every_table_row_is_reached_by_a_case() -> None:
    # A row shadowed by an earlier, broader pattern would never apply.
    reached = set()
    for model, _ in QUIRK_CASES:
        name = model.lower()
        hit = next((i for i, (p, _) in enumerate(QUIRKS_BY_MODEL_PATTERN) if p.search(name)), None)
        reached.add(hit)
    assert reached >= set(range(len(QUIRKS_BY_MODEL_PATTERN)))


def test_unknown_model_gets_safe_defaults() -> None:
    quirks = quirks_for_model("unknown")
    assert quirks.reasoning is ReasoningSwitch.NONE
    assert quirks.max_output_tokens is None and quirks.context_window is None
    assert not quirks.send_reasoning_back and not quirks.accepts_top_k
    # Unknown capabilities: tools and images are sent, and a rejection is learned.
    assert quirks.supports_tools is None and quirks.supports_images is None
    assert quirks.accepts_chat_template_kwargs and quirks.accepts_reasoning_effort
    assert quirks.accepts_parallel_tool_calls and quirks.accepts_stream_options


def test_existing_fields_keep_their_positions() -> None:
    # Callers build ModelQuirks positionally: (reasoning, max_output_tokens, context_window).
    quirks = ModelQuirks(ReasoningSwitch.ALWAYS, 1, 2)
    assert (quirks.reasoning, quirks.max_output_tokens, quirks.context_window) == (R.ALWAYS, 1, 2)


def test_quirk_patterns_are_lower_case() -> None:
    # quirks_for_model lower-cases the id; an upper-case pattern could never match.
    for pattern, _ in QUIRKS_BY_MODEL_PATTERN:
        assert pattern.pattern == pattern.pattern.lower()


def test_kimi_k2_instruct_switches() -> None:
    quirks = quirks_for_model("moonshotai/kimi-k2-instruct")
    assert (quirks.reasoning, quirks.max_output_tokens) == (ReasoningSwitch.NONE, 32768)


def test_kimi_k2_instruct_0711_context_window() -> None:
    assert quirks_for_model("moonshotai/kimi-k2-instruct").context_window == 131072


# ------------------------------------------------------------------ overrides

OVERRIDES: dict[str, dict[str, Any]] = {
    "meta/llama-3.3-70b-instruct": {"max_output_tokens": 8192, "supports_tools": True},
    "my/local-model": {"reasoning": "template_enable_thinking", "accepts_top_k": True},
}


def test_overrides_replace_fields_of_the_exact_model_only() -> None:
    llama = quirks_for_model("meta/llama-3.3-70b-instruct", OVERRIDES)
    assert llama == q(R.NONE, 8192, 131072, supports_tools=True, supports_images=False)
    local = quirks_for_model("my/local-model", OVERRIDES)
    assert local == q(R.TEMPLATE_ENABLE_THINKING, accepts_top_k=True)
    # Exact ids: another spelling or another model keeps the table's quirks.
    assert quirks_for_model("META/llama-3.3-70b-instruct", OVERRIDES).max_output_tokens == 4096
    assert quirks_for_model("openai/gpt-oss-120b", OVERRIDES) == quirks_for_model(
        "openai/gpt-oss-120b"
    )


def test_no_overrides_is_the_cached_table_answer() -> None:
    cached = quirks_for_model("openai/gpt-oss-120b")
    assert quirks_for_model("openai/gpt-oss-120b", None) is cached
    assert quirks_for_model("openai/gpt-oss-120b", {}) is cached


def test_an_override_can_set_a_capability_back_to_unknown() -> None:
    quirks = quirks_for_model(
        "openai/gpt-oss-120b", {"openai/gpt-oss-120b": {"supports_images": None}}
    )
    assert quirks.supports_images is None


def test_a_bad_override_passed_straight_in_is_refused() -> None:
    with pytest.raises(ValueError, match=r"capabilities\.m\.reasoning"):
        quirks_for_model("m", {"m": {"reasoning": "loud"}})


def test_valid_overrides_are_kept_as_json_values() -> None:
    data = {
        "a/b": {
            "reasoning": "slash_think",
            "max_output_tokens": 4096,
            "context_window": None,
            "supports_tools": None,
            "supports_images": False,
            "accepts_chat_template_kwargs": False,
            "accepts_stream_options": True,
        },
        "c/d": {"reasoning": ReasoningSwitch.ALWAYS},
        "e/f": {},
    }
    checked = capability_overrides_from_mapping(data, where="settings.json: capabilities")
    assert checked == {**data, "c/d": {"reasoning": "always"}}
    assert checked["a/b"] is not data["a/b"]  # a copy, not the caller's dict


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param([], r"^caps: must be an object", id="not-an-object"),
        pytest.param({"": {}}, r"^caps: model ids must be non-empty", id="empty-id"),
        pytest.param({1: {}}, r"^caps: model ids must be non-empty", id="non-string-id"),
        pytest.param({"m": []}, r"^caps\.m: must be an object", id="fields-not-an-object"),
        pytest.param({"m": {"speed": 1}}, r"^caps\.m\.speed: not a capability field", id="unknown"),
        pytest.param({"m": {"reasoning": "on"}}, r"^caps\.m\.reasoning: must be one of", id="enum"),
        pytest.param({"m": {"reasoning": None}}, r"^caps\.m\.reasoning: must be one", id="null"),
        pytest.param(
            {"m": {"max_output_tokens": 0}}, r"^caps\.m\.max_output_tokens: must be a positive"
        ),
        pytest.param(
            {"m": {"context_window": True}}, r"^caps\.m\.context_window: must be a positive"
        ),
        pytest.param({"m": {"context_window": "8k"}}, r"^caps\.m\.context_window: must be"),
        pytest.param(
            {"m": {"supports_tools": "yes"}},
            r"^caps\.m\.supports_tools: must be true, false or null",
        ),
        pytest.param(
            {"m": {"accepts_top_k": None}}, r"^caps\.m\.accepts_top_k: must be true or false"
        ),
        pytest.param(
            {"m": {"accepts_stream_options": 1}}, r"^caps\.m\.accepts_stream_options: must be true"
        ),
    ],
)
def test_invalid_overrides_name_where_and_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        capability_overrides_from_mapping(data, where="caps")


def test_every_field_can_be_overridden() -> None:
    assert set(ModelQuirks.__dataclass_fields__) == QUIRK_FIELDS
