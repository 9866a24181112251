"""What each model family can do and how it must be asked: data, looked up by model id.

Rules:
- This is a table, not logic. Every row is a regex over the upstream model id
  (lower-cased) and the `ModelQuirks` of that family; the first match wins,
  unknown models get the defaults (an ordinary OpenAI-compatible chat model).
- A row states only what a source establishes (model cards on build.nvidia.com,
  docs.api.nvidia.com, the vendors' own cards, real upstream answers); the rest
  stays at its default. `None` in `supports_tools` / `supports_images` means
  unknown: the part is sent, and a rejection is learned (`quirk_learning`).
- Settings override any field per exact model id; `capability_overrides_from_mapping`
  is the one validator of those overrides, so a bad value fails at load time.
"""

import dataclasses
import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ReasoningSwitch(enum.Enum):
    """How a model family is told to think (PROTOCOL.md, provider quirks)."""

    NONE = "none"  # no switch known: send nothing
    ALWAYS = "always"  # R1-style: reasons whatever we say
    # Llama-Nemotron v1/v1.1: a system message "detailed thinking on"
    DETAILED_THINKING_SYSTEM = "detailed_thinking"
    SLASH_THINK_SYSTEM = "slash_think"  # Nemotron v1.5 / Nano 9B v2: system "/think" | "/no_think"
    TEMPLATE_THINKING = "template_thinking"  # DeepSeek V3.1+, Kimi K2.5: {"thinking": b}
    TEMPLATE_ENABLE_THINKING = "template_enable_thinking"  # Qwen3, GLM, Nemotron 3: enable_thinking
    REASONING_EFFORT = "reasoning_effort"  # gpt-oss, o-series: reasoning_effort low|medium|high


@dataclass(frozen=True, slots=True)
class ModelQuirks:
    """What we know of a model family; unknown models get the defaults."""

    reasoning: ReasoningSwitch = ReasoningSwitch.NONE
    max_output_tokens: int | None = None
    context_window: int | None = None
    # DeepSeek in thinking mode wants earlier reasoning back as `reasoning_content`
    # on assistant turns with tool calls; Qwen3 and Nemotron do worse with it.
    send_reasoning_back: bool = False
    accepts_top_k: bool = False
    supports_tools: bool | None = None  # None: unknown; tools are sent, a rejection is learned
    supports_images: bool | None = None  # None: unknown; images are sent, a rejection is learned
    accepts_chat_template_kwargs: bool = True  # False: Mistral tokenizers refuse the field
    accepts_reasoning_effort: bool = True
    accepts_parallel_tool_calls: bool = True
    accepts_stream_options: bool = True
    # OpenAI's spec allows `"content": null` beside tool calls; llama-cpp-python
    # answers it 500 ("Input should be a valid string"): send "" instead.
    accepts_null_content: bool = True
    # `tool_choice: "required"`; llama-cpp-python fails it (an assertion, a 500):
    # with one tool the named form forces the same call.
    accepts_required_tool_choice: bool = True


_R = ReasoningSwitch

# Ordered: the first pattern that matches the upstream model id (lower-cased) wins.
# Ids are NIM's (`vendor/model`), but the patterns also fit other providers' spellings
# (`@cf/openai/gpt-oss-120b`, `deepseek/deepseek-r1`) where the family is the same.
QUIRKS_BY_MODEL_PATTERN: tuple[tuple[re.Pattern[str], ModelQuirks], ...] = tuple(
    (re.compile(pattern), quirks)
    for pattern, quirks in (
        # ---- always reasoning, text only (DeepSeek and Qwen cards: text in, text out)
        (r"deepseek-r1", ModelQuirks(_R.ALWAYS, 32768, 131072, supports_images=False)),
        (r"qwq", ModelQuirks(_R.ALWAYS, 32768, 131072, supports_images=False)),
        # ---- DeepSeek V3.1 / V3.2 / V4 on NIM: chat_template_kwargs {"thinking": b}
        (
            r"deepseek-v3\.[1-9]|deepseek-v[4-9]",
            ModelQuirks(
                _R.TEMPLATE_THINKING,
                32768,
                131072,
                send_reasoning_back=True,
                supports_tools=True,
                supports_images=False,
            ),
        ),
        # ---- Qwen: Coder and Next-Instruct have no thinking mode; Next-Thinking always thinks
        (
            r"qwen3-coder",
            ModelQuirks(_R.NONE, 65536, 262144, supports_tools=True, supports_images=False),
        ),
        (
            r"qwen3-next-.*thinking",
            ModelQuirks(_R.ALWAYS, 32768, 262144, supports_tools=True, supports_images=False),
        ),
        (
            r"qwen3-next",
            ModelQuirks(_R.NONE, 32768, 262144, supports_tools=True, supports_images=False),
        ),
        # Qwen3.5 is natively multimodal (build.nvidia.com model card), 262K context.
        (
            r"qwen3\.5",
            ModelQuirks(
                _R.TEMPLATE_ENABLE_THINKING,
                32768,
                262144,
                supports_tools=True,
                supports_images=True,
            ),
        ),
        (r"qwen3", ModelQuirks(_R.TEMPLATE_ENABLE_THINKING, 32768, 131072, supports_tools=True)),
        # ---- Nemotron. VL / Omni variants take images; their switches are not established.
        (r"nemotron-nano-(?:12b-v2-)?vl|nemotron-3-nano-omni", ModelQuirks(supports_images=True)),
        # Nemotron 3 Nano: "a flag in the chat template" (enable_thinking), not /think.
        (
            r"nemotron-3-nano|nemotron-nano-3|nemotron-3\.5",
            ModelQuirks(
                _R.TEMPLATE_ENABLE_THINKING,
                32768,
                131072,
                supports_tools=True,
                supports_images=False,
            ),
        ),
        (
            r"nemotron.*v1\.5|nemotron-nano-9b-v2",
            ModelQuirks(_R.SLASH_THINK_SYSTEM, 32768, 131072, supports_images=False),
        ),
        (
            r"llama-3\.[13]-nemotron-(?:super|ultra|nano)-.*v1",
            ModelQuirks(
                _R.DETAILED_THINKING_SYSTEM,
                32768,
                131072,
                supports_tools=True,
                supports_images=False,
            ),
        ),
        # ---- gpt-oss: text only, reasoning_effort
        (
            r"gpt-oss",
            ModelQuirks(
                _R.REASONING_EFFORT, 32768, 131072, supports_tools=True, supports_images=False
            ),
        ),
        # ---- Kimi. K2 Instruct 0711 has 128K of context; 0905 and later 256K.
        (
            r"kimi-k2-thinking",
            ModelQuirks(_R.ALWAYS, 32768, 262144, supports_tools=True, supports_images=False),
        ),
        # K2.5 is natively multimodal; on NIM thinking is chat_template_kwargs {"thinking": b}.
        (
            r"kimi-k2\.[5-9]",
            ModelQuirks(
                _R.TEMPLATE_THINKING, 32768, 262144, supports_tools=True, supports_images=True
            ),
        ),
        (
            r"kimi-k2-instruct-0905",
            ModelQuirks(_R.NONE, 32768, 262144, supports_tools=True, supports_images=False),
        ),
        (
            r"kimi-k2",
            ModelQuirks(_R.NONE, 32768, 131072, supports_tools=True, supports_images=False),
        ),
        # ---- MiniMax M2.x: interleaved thinking, always on; text only
        (
            r"minimax-m2",
            ModelQuirks(_R.ALWAYS, 32768, 196608, supports_tools=True, supports_images=False),
        ),
        # ---- GLM (NIM spells them `z-ai/glm4.7`, `z-ai/glm5`). The V models take images.
        (r"glm-?\d(?:\.\d)?v", ModelQuirks(supports_images=True)),
        (
            r"glm-?4\.[5-9]|glm-?5",
            ModelQuirks(
                _R.TEMPLATE_ENABLE_THINKING,
                32768,
                131072,
                supports_tools=True,
                supports_images=False,
            ),
        ),
        # ---- Llama: 3.2 11B/90B Vision and Llama 4 take images, the rest is text
        (r"llama-3\.2-\d+b-vision", ModelQuirks(_R.NONE, 4096, 131072, supports_images=True)),
        (r"llama-3\.[1-3]", ModelQuirks(_R.NONE, 4096, 131072, supports_images=False)),
        (
            r"llama-4",
            ModelQuirks(_R.NONE, 16384, 131072, supports_tools=True, supports_images=True),
        ),
        # ---- Mistral: mistral-common tokenizers answer 400 "chat_template is not
        # supported for Mistral tokenizers" to any chat_template_kwargs.
        (
            r"mistral-medium-3|mistral-small-3\.[12]",
            ModelQuirks(
                context_window=131072,
                supports_tools=True,
                supports_images=True,
                accepts_chat_template_kwargs=False,
            ),
        ),
        (
            r"mistral-large-3",
            ModelQuirks(
                supports_tools=True, supports_images=True, accepts_chat_template_kwargs=False
            ),
        ),
        (
            r"mistral-large-2",
            ModelQuirks(
                context_window=131072,
                supports_tools=True,
                supports_images=False,
                accepts_chat_template_kwargs=False,
            ),
        ),
        (
            r"codestral-22b",
            ModelQuirks(
                context_window=32768, supports_images=False, accepts_chat_template_kwargs=False
            ),
        ),
        (r"devstral", ModelQuirks(supports_tools=True, accepts_chat_template_kwargs=False)),
        (
            r"mistralai/|magistral|ministral|mixtral|mathstral|codestral",
            ModelQuirks(accepts_chat_template_kwargs=False),
        ),
        # ---- Gemma: 3 (but 1B) and 3n take images; 2 and older are 8K text models
        (r"gemma-3-1b", ModelQuirks(context_window=32768, supports_images=False)),
        (r"gemma-3n", ModelQuirks(context_window=32768, supports_images=True)),
        (r"gemma-3-", ModelQuirks(context_window=131072, supports_images=True)),
        (
            r"gemma-2-|gemma-[27]b|codegemma|recurrentgemma",
            ModelQuirks(context_window=8192, supports_images=False),
        ),
        # ---- Phi
        (
            r"phi-4-multimodal|phi-3\.5-vision|phi-3-vision",
            ModelQuirks(context_window=131072, supports_images=True),
        ),
        (
            r"phi-4-mini-flash-reasoning",
            ModelQuirks(_R.ALWAYS, context_window=65536, supports_images=False),
        ),
        (r"phi-4-reasoning", ModelQuirks(_R.ALWAYS, context_window=32768, supports_images=False)),
        (
            r"phi-4-mini",
            ModelQuirks(context_window=131072, supports_tools=True, supports_images=False),
        ),
        (r"phi-4", ModelQuirks(context_window=16384, supports_images=False)),
        # ---- other vision-language chat models
        (r"cosmos-reason", ModelQuirks(supports_images=True)),
    )
)

QUIRK_FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(ModelQuirks))
_OPTIONAL_BOOL_FIELDS = frozenset({"supports_tools", "supports_images"})
_TOKEN_COUNT_FIELDS = frozenset({"max_output_tokens", "context_window"})


@functools.lru_cache(maxsize=1024)  # a few dozen regex searches per request otherwise
def _table_quirks(model_id: str) -> ModelQuirks:
    name = model_id.lower()
    for pattern, quirks in QUIRKS_BY_MODEL_PATTERN:
        if pattern.search(name):
            return quirks
    return ModelQuirks()


def quirks_for_model(
    model_id: str, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> ModelQuirks:
    """The table's quirks for `model_id`, with its settings overrides (exact id) applied."""
    quirks = _table_quirks(model_id)
    if not overrides or model_id not in overrides:
        return quirks
    fields = _checked_fields(overrides[model_id], f"capabilities.{model_id}")
    if "reasoning" in fields:
        fields["reasoning"] = ReasoningSwitch(fields["reasoning"])
    return dataclasses.replace(quirks, **fields)


def capability_overrides_from_mapping(data: object, *, where: str) -> dict[str, dict[str, Any]]:
    """Validated per-model overrides (JSON values kept: reasoning stays a string).

    Raises ValueError naming `where`, the model id and the bad field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be an object of model id -> fields")
    checked: dict[str, dict[str, Any]] = {}
    for model_id, fields in data.items():
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(f"{where}: model ids must be non-empty strings, got {model_id!r}")
        checked[model_id] = _checked_fields(fields, f"{where}.{model_id}")
    return checked


def _checked_fields(fields: object, where: str) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}: must be an object of ModelQuirks fields")
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in QUIRK_FIELDS:
            known = ", ".join(sorted(QUIRK_FIELDS))
            raise ValueError(f"{where}.{name}: not a capability field (known: {known})")
        checked[name] = _checked_value(name, value, f"{where}.{name}")
    return checked


def _checked_value(name: str, value: object, where: str) -> object:
    if name == "reasoning":
        choices = [switch.value for switch in ReasoningSwitch]
        if isinstance(value, ReasoningSwitch):
            return value.value
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    if name in _TOKEN_COUNT_FIELDS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError(f"{where}: must be a positive integer or null, got {value!r}")
    if isinstance(value, bool) or (value is None and name in _OPTIONAL_BOOL_FIELDS):
        return value
    allowed = "true, false or null" if name in _OPTIONAL_BOOL_FIELDS else "true or false"
    raise ValueError(f"{where}: must be {allowed}, got {value!r}")
