"""The model picker: lists, filters, probes and saves a tier, through a FakeController."""

import logging

import pytest
from pytestqt.qtbot import QtBot

from app.config.settings import Settings, TierModels
from app.core.catalog import CatalogModel
from app.ui.model_picker import COL_PROBE, ModelPicker
from tests.ui.fakes import FAKE_IMAGE_MODELS, FAKE_MODELS, FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")

QWEN = "qwen/qwen3-coder-480b-a35b-instruct"


def open_picker(qtbot: QtBot, controller: FakeController, tier: str = "default") -> ModelPicker:
    picker = ModelPicker(controller, tier=tier)
    qtbot.addWidget(picker)
    qtbot.waitUntil(lambda: len(picker.visible_model_ids()) == len(controller.models))
    return picker


def test_lists_every_model_with_capabilities(qtbot):
    controller = FakeController()
    picker = open_picker(qtbot, controller)

    assert sorted(picker.visible_model_ids()) == sorted(m.id for m in FAKE_MODELS)
    assert picker.status_label.text() == "4 models from 2 providers."
    model = picker.table.model()
    row = picker.visible_model_ids().index(QWEN)
    cells = [model.index(row, col).data() for col in range(model.columnCount())]
    assert cells == [QWEN, "nvidia", "chat", "yes", "no", "no", "256K", ""]
    assert controller.calls == ["list_models", "list_image_models"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("qwen", [QWEN], id="by-id"),
        pytest.param("LLAMA vision", ["meta/llama-3.2-90b-vision-instruct"], id="words-any-case"),
        pytest.param("GPT-4.1 mini", ["gpt-4.1-mini"], id="by-display-name"),
        pytest.param("openai", ["gpt-4.1-mini"], id="by-provider"),
        pytest.param("nothing-like-this", [], id="none"),
    ],
)
def test_filter(qtbot, text, expected):
    picker = open_picker(qtbot, FakeController())
    picker.filter_edit.setText(text)
    assert picker.visible_model_ids() == expected
    if not expected:
        assert "none matches" in picker.status_label.text()
    picker.filter_edit.clear()
    assert len(picker.visible_model_ids()) == len(FAKE_MODELS)


def test_probe_shows_the_result_in_its_row(qtbot):
    controller = FakeController()
    picker = open_picker(qtbot, controller)
    assert picker.select_model("nvidia", QWEN)

    picker.probe_button.click()

    qtbot.waitUntil(lambda: "tool calls work" in picker.probe_text("nvidia", QWEN))
    assert f"probe nvidia/{QWEN}" in controller.calls
    row = picker.visible_model_ids().index(QWEN)
    assert "tool calls work" in picker.table.model().index(row, COL_PROBE).data()


def test_probe_failure_is_told_in_words(qtbot):
    class Refusing(FakeController):
        async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
            return False, None, "your key is not entitled to this model (403)"

    picker = open_picker(qtbot, Refusing())
    picker.select_model("nvidia", QWEN)
    picker.probe_button.click()
    qtbot.waitUntil(lambda: "not available" in picker.probe_text("nvidia", QWEN))
    assert "403" in picker.probe_text("nvidia", QWEN)


@pytest.mark.parametrize(
    ("tier", "provider", "model_id", "stored"),
    [
        pytest.param("default", "nvidia", QWEN, QWEN, id="default-provider-bare-id"),
        pytest.param("opus", "openai", "gpt-4.1-mini", "openai/gpt-4.1-mini", id="other-prefixed"),
        pytest.param("subagent", "nvidia", QWEN, QWEN, id="subagent"),
    ],
)
def test_use_saves_the_tier(qtbot, tier, provider, model_id, stored):
    controller = FakeController()
    picker = open_picker(qtbot, controller, tier=tier)
    assert picker.tier == tier
    picker.select_model(provider, model_id)

    picker.use_button.click()

    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert getattr(controller.saved[0].tiers, tier) == stored
    # nothing else changed
    others = {t: getattr(Settings().tiers, t) for t in ("default", "opus", "sonnet", "haiku")}
    others.pop(tier, None)
    assert all(getattr(controller.saved[0].tiers, t) == v for t, v in others.items())
    qtbot.waitUntil(lambda: "Saved" in picker.status_label.text())
    assert stored in picker.current_label.text()


def test_changing_the_target_tier_and_following_the_default(qtbot):
    settings = Settings(tiers=TierModels(default=QWEN, haiku="openai/gpt-4.1-mini"))
    controller = FakeController(settings)
    picker = open_picker(qtbot, controller, tier="opus")
    assert not picker.follow_default_button.isEnabled()  # opus already follows the default

    picker.set_tier("haiku")
    assert "openai/gpt-4.1-mini" in picker.current_label.text()
    assert picker.selected_model() == FAKE_MODELS[3]  # the current choice is selected
    picker.follow_default_button.click()

    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert controller.saved[0].tiers.haiku is None
    assert controller.saved[0].tiers.default == QWEN


def test_refresh_reloads_and_keeps_probe_results(qtbot):
    controller = FakeController()
    picker = open_picker(qtbot, controller)
    picker.select_model("nvidia", QWEN)
    picker.probe_button.click()
    qtbot.waitUntil(lambda: picker.probe_text("nvidia", QWEN) != "")
    extra = CatalogModel("new/model", "nvidia", "New", 0, "new", FAKE_MODELS[0].quirks)
    controller.models.append(extra)

    picker.refresh_button.click()

    qtbot.waitUntil(lambda: "new/model" in picker.visible_model_ids())
    assert controller.calls.count("list_models") == 2
    row = picker.visible_model_ids().index(QWEN)
    assert picker.table.model().index(row, 6).data() != ""
    selected = picker.selected_model()
    assert selected is not None and selected.id == QWEN


def test_loading_and_error_states_in_words(qtbot):
    class Offline(FakeController):
        async def list_models(self, *, refresh: bool = False) -> list[CatalogModel]:
            raise ConnectionError("integrate.api.nvidia.com is unreachable")

    picker = ModelPicker(Offline())
    qtbot.addWidget(picker)
    assert picker.status_label.text() == "Loading models..."
    assert not picker.refresh_button.isEnabled()
    qtbot.waitUntil(lambda: "Could not load" in picker.status_label.text())
    assert "unreachable" in picker.status_label.text()
    assert picker.refresh_button.isEnabled()
    assert not picker.use_button.isEnabled()


def test_empty_list_says_what_to_check(qtbot):
    controller = FakeController()
    controller.models = []
    picker = ModelPicker(controller)
    qtbot.addWidget(picker)
    qtbot.waitUntil(lambda: "No models" in picker.status_label.text())


def test_unknown_tier_is_refused(qtbot):
    with pytest.raises(ValueError, match="unknown tier"):
        ModelPicker(FakeController(), tier="sonet")


# ------------------------------------------------------------------ image models

FLUX = "@cf/black-forest-labs/flux-1-schnell"


def open_with_images(qtbot: QtBot, controller: FakeController) -> ModelPicker:
    controller.image_models = list(FAKE_IMAGE_MODELS)
    picker = ModelPicker(controller, tier="opus")
    qtbot.addWidget(picker)
    everything = len(controller.models) + len(controller.image_models)
    qtbot.waitUntil(lambda: len(picker.visible_model_ids()) == everything)
    return picker


def test_image_models_are_marked_and_can_be_hidden(qtbot):
    picker = open_with_images(qtbot, FakeController())
    assert picker.status_label.text() == "4 chat and 2 image models from 3 providers."
    model = picker.table.model()
    row = picker.visible_model_ids().index(FLUX)
    cells = [model.index(row, col).data() for col in range(model.columnCount())]
    assert cells == [FLUX, "cf", "image", "-", "-", "-", "-", ""]

    picker.images_check.setChecked(False)
    assert sorted(picker.visible_model_ids()) == sorted(m.id for m in FAKE_MODELS)
    assert picker.status_label.text() == "4 chat and 2 image models from 3 providers, 4 shown."
    picker.images_check.setChecked(True)
    assert FLUX in picker.visible_model_ids()


def test_an_image_model_cannot_be_used_for_a_tier(qtbot):
    controller = FakeController()
    picker = open_with_images(qtbot, controller)
    assert picker.select_model("cf", FLUX)
    assert not picker.use_button.isEnabled() and not picker.probe_button.isEnabled()
    assert "POST /v1/images/generations" in picker.use_button.toolTip()
    assert picker.status_label.text().startswith(f"cf/{FLUX} is an image model")

    picker.use_button.click()  # disabled: nothing happens; a double-click neither
    picker.table.doubleClicked.emit(picker.table.currentIndex())
    picker._use_selected()  # the slots themselves refuse too
    picker._probe_selected()
    assert controller.saved == []
    assert not any(call.startswith("probe") for call in controller.calls)

    assert picker.select_model("nvidia", QWEN)  # back to a chat model: count, buttons
    assert picker.use_button.isEnabled() and picker.use_button.toolTip() == ""
    assert picker.status_label.text() == "4 chat and 2 image models from 3 providers."


def test_image_list_failure_leaves_the_chat_models(qtbot, caplog):
    class NoImages(FakeController):
        async def list_image_models(self, *, refresh: bool = False) -> list[CatalogModel]:
            raise OSError("model search unreachable")

    caplog.set_level(logging.INFO, logger="app.ui.model_picker")
    picker = open_picker(qtbot, NoImages())
    assert picker.status_label.text() == "4 models from 2 providers."
    assert "model search unreachable" in caplog.text
