"""What each model family can do and how it must be asked: data, looked up by model id.

Rule: this is a table, not logic. Every row is a regex over the upstream model
id (lower-cased) and the `ModelQuirks` of that family; the first match wins,
unknown models get the defaults (which assume an ordinary OpenAI-compatible
chat model). Settings can override any field per model id.
"""

import enum
import functools
import re
from dataclasses import dataclass


class ReasoningSwitch(enum.Enum):
    """How a model family is told to think (PROTOCOL.md, provider quirks)."""

    NONE = "none"  # no switch known: send nothing
    ALWAYS = "always"  # R1-style: reasons whatever we say
    # Llama-Nemotron v1/v1.1: a system message "detailed thinking on"
    DETAILED_THINKING_SYSTEM = "detailed_thinking"
    SLASH_THINK_SYSTEM = "slash_think"  # Nemotron v1.5 / Nemotron-3: system "/think" | "/no_think"
    TEMPLATE_THINKING = "template_thinking"  # DeepSeek V3.1+: chat_template_kwargs {"thinking": b}
    TEMPLATE_ENABLE_THINKING = "template_enable_thinking"  # Qwen3: {"enable_thinking": b}
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


# Ordered: the first pattern that matches the upstream model id (lower-cased) wins.
QUIRKS_BY_MODEL_PATTERN: tuple[tuple[re.Pattern[str], ModelQuirks], ...] = tuple(
    (re.compile(pattern), quirks)
    for pattern, quirks in (
        (r"deepseek-r1|qwq", ModelQuirks(ReasoningSwitch.ALWAYS, 32768, 131072)),
        (
            r"deepseek-v3\.[1-9]|deepseek-v[4-9]",
            ModelQuirks(ReasoningSwitch.TEMPLATE_THINKING, 32768, 131072, send_reasoning_back=True),
        ),
        (r"qwen3-coder", ModelQuirks(ReasoningSwitch.NONE, 65536, 262144)),
        (r"qwen3", ModelQuirks(ReasoningSwitch.TEMPLATE_ENABLE_THINKING, 32768, 131072)),
        (
            r"nemotron.*v1\.5|nemotron-3|nemotron-nano-9b-v2",
            ModelQuirks(ReasoningSwitch.SLASH_THINK_SYSTEM, 32768, 131072),
        ),
        (
            r"llama-3\.[13]-nemotron.*v1",
            ModelQuirks(ReasoningSwitch.DETAILED_THINKING_SYSTEM, 32768, 131072),
        ),
        (r"gpt-oss", ModelQuirks(ReasoningSwitch.REASONING_EFFORT, 32768, 131072)),
        # K2 Instruct 0711 has 128K of context; 0905 and the K2.x releases 256K.
        (
            r"kimi-k2-instruct-0905|kimi-k2-thinking|kimi-k2\.\d",
            ModelQuirks(ReasoningSwitch.NONE, 32768, 262144),
        ),
        (r"kimi-k2", ModelQuirks(ReasoningSwitch.NONE, 32768, 131072)),
        (r"minimax-m2", ModelQuirks(ReasoningSwitch.ALWAYS, 32768, 196608)),
        (r"glm-4\.[5-9]|glm-5", ModelQuirks(ReasoningSwitch.NONE, 32768, 131072)),
        (r"llama-3\.[1-3]", ModelQuirks(ReasoningSwitch.NONE, 4096, 131072)),
        (r"llama-4", ModelQuirks(ReasoningSwitch.NONE, 16384, 131072)),
    )
)


@functools.lru_cache(maxsize=1024)  # a dozen regex searches per request otherwise
def quirks_for_model(upstream_model: str) -> ModelQuirks:
    name = upstream_model.lower()
    for pattern, quirks in QUIRKS_BY_MODEL_PATTERN:
        if pattern.search(name):
            return quirks
    return ModelQuirks()
