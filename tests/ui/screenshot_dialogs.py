"""Screenshots of the model picker and the settings dialog, with a FakeController.

Run: `.venv/bin/python -m tests.ui.screenshot_dialogs [OUTPUT_DIR]`
(default `resources/screenshots/`). Works offscreen: `QWidget.grab()` renders
without a display.
"""

import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")  # qasync would probe PyQt5/PyQt6/PySide2 first

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from app.config.settings import Settings, TierModels  # noqa: E402
from app.core.capabilities import ModelQuirks, ReasoningSwitch  # noqa: E402
from app.core.catalog import CatalogModel  # noqa: E402
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind  # noqa: E402
from app.ui.model_picker import ModelPicker  # noqa: E402
from app.ui.settings.dialog import SettingsDialog  # noqa: E402
from tests.ui.fakes import FAKE_IMAGE_MODELS, FAKE_MODELS, FakeController  # noqa: E402

ROOT = Path(__file__).parents[2]
R = ReasoningSwitch

MORE_MODELS = [
    CatalogModel(
        model_id,
        "nvidia",
        name,
        0,
        model_id.split("/")[0],
        quirks,
    )
    for model_id, name, quirks in (
        (
            "moonshotai/kimi-k2-instruct",
            "Kimi K2 Instruct",
            ModelQuirks(R.NONE, 16384, 131072, supports_tools=True, supports_images=False),
        ),
        (
            "nvidia/llama-3.3-nemotron-super-49b-v1.5",
            "Nemotron Super 49B v1.5",
            ModelQuirks(R.SLASH_THINK_SYSTEM, 32768, 131072, supports_tools=True),
        ),
        (
            "openai/gpt-oss-120b",
            "gpt-oss-120b",
            ModelQuirks(R.REASONING_EFFORT, 32768, 131072, supports_tools=True),
        ),
        (
            "qwen/qwen3-235b-a22b",
            "Qwen3 235B A22B",
            ModelQuirks(R.TEMPLATE_ENABLE_THINKING, 32768, 131072, supports_tools=True),
        ),
        (
            "deepseek-ai/deepseek-r1",
            "DeepSeek R1",
            ModelQuirks(R.ALWAYS, 32768, 131072, supports_images=False),
        ),
        ("mistralai/mistral-medium-3-instruct", "Mistral Medium 3", ModelQuirks()),
    )
]


class ShowcaseController(FakeController):
    """The fake, with a keychain that has a name and a probe that answers in words."""

    def key_store_description(self) -> str:
        return "Secret Service"

    async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
        await super().probe(provider, model)
        if "r1" in model:
            return True, False, "answers; tool calls are refused"
        return True, True, "answers, tool calls work"


def showcase_settings() -> Settings:
    nvidia = PRESET_BY_KIND[ProviderKind.NVIDIA]
    return Settings(
        providers=(
            Provider("nvidia", ProviderKind.NVIDIA, nvidia.base_url),
            Provider("openai", ProviderKind.OPENAI, PRESET_BY_KIND[ProviderKind.OPENAI].base_url),
            Provider("ollama", ProviderKind.OLLAMA, PRESET_BY_KIND[ProviderKind.OLLAMA].base_url),
        ),
        tiers=TierModels(
            default="qwen/qwen3-coder-480b-a35b-instruct",
            opus="deepseek-ai/deepseek-v3.1",
            haiku="openai/gpt-4.1-mini",
        ),
    )


async def settle(until: object = None, timeout: float = 5.0) -> None:
    """Let pending tasks and paint events run (until `until()` is true, if given).

    Only awaits: the qasync loop processes Qt events meanwhile. (Calling
    `processEvents()` from inside a task would step other tasks re-entrantly.)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await asyncio.sleep(0.05)
        if until is None or (callable(until) and until()) or loop.time() > deadline:
            break
    await asyncio.sleep(0.1)


def save(widget: QWidget, path: Path) -> None:
    widget.grab().save(str(path))
    print(f"wrote {path}")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)

    # ---- the model picker: several providers' models, one probed, the Opus tier
    controller = ShowcaseController(showcase_settings())
    controller.models = [*FAKE_MODELS, *MORE_MODELS]
    controller.image_models = list(FAKE_IMAGE_MODELS)  # marked "image", never a tier's
    picker = ModelPicker(controller, tier="opus")
    picker.resize(980, 520)
    picker.show()
    await settle(lambda: bool(picker.visible_model_ids()))
    for model_id in ("qwen/qwen3-coder-480b-a35b-instruct", "deepseek-ai/deepseek-r1"):
        picker.select_model("nvidia", model_id)
        picker.probe_button.click()
        await settle(lambda m=model_id: picker.probe_text("nvidia", m) != "")
    picker.select_model("nvidia", "deepseek-ai/deepseek-v3.1")
    await settle()
    save(picker, out / "model-picker.png")
    picker.close()

    # ---- settings: NVIDIA selected, its key set, the connection tested
    controller = ShowcaseController(showcase_settings())
    controller.keys["nvidia"] = "placeholder-not-a-real-key"
    dialog = SettingsDialog(controller)
    dialog.show()
    dialog.providers_tab.select_provider("nvidia")
    dialog.providers_tab.test_button.click()
    await settle(lambda: dialog.providers_tab.key_message_label.text().startswith("Works"))
    save(dialog, out / "settings.png")
    dialog.tabs.setCurrentWidget(dialog.server_tab)
    await settle()
    save(dialog, out / "settings-server.png")
    dialog.close()

    # ---- web tools: Tavily chosen, its key stored, a test search run
    controller = ShowcaseController(replace(showcase_settings(), web_search_backend="tavily"))
    controller.keys["web-search-tavily"] = "placeholder-not-a-real-key"
    dialog = SettingsDialog(controller)
    dialog.show()
    dialog.tabs.setCurrentWidget(dialog.web_tab)
    dialog.web_tab.test_button.click()
    await settle(lambda: dialog.web_tab.message_label.text().startswith("Works"))
    save(dialog, out / "settings-web-tools.png")
    dialog.close()

    # ---- first run: no key anywhere; the dialog opens at the NVIDIA key field
    controller = ShowcaseController(
        replace(
            showcase_settings(),
            providers=(
                Provider(
                    "nvidia", ProviderKind.NVIDIA, PRESET_BY_KIND[ProviderKind.NVIDIA].base_url
                ),
            ),
        )
    )
    dialog = SettingsDialog(controller, focus_key_for="nvidia")
    dialog.show()
    await settle(lambda: dialog.focusWidget() is dialog.providers_tab.key_edit)
    save(dialog, out / "settings-first-run.png")
    dialog.close()


def run(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "resources" / "screenshots"
    app = QApplication.instance() or QApplication(argv)
    assert isinstance(app, QApplication)
    asyncio.run(main(out), loop_factory=lambda: qasync.QEventLoop(app))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv))
