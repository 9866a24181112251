"""Choose the model for each tier from the providers' live model lists.

The picker reads `controller.list_models()` (every configured provider's
`/v1/models`, chat models only, with capabilities), lets the user filter and
probe them, and "Use" writes the chosen model into one tier of the settings at
once through `controller.apply_settings` (saved, applied without a restart).
Image models (`controller.list_image_models()`) are shown too, marked "image" in
the Kind column and hidden by a checkbox; they can be neither used for a tier nor
probed (a chat tier would send them chat requests).

A tier holds a *client model reference*: the bare provider id for models of
the default provider, `provider/id` for the others (the router's syntax).
"""

import logging
from dataclasses import replace
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.config.settings import TIER_NAMES
from app.core.capabilities import ReasoningSwitch
from app.core.catalog import CatalogModel, ModelKind
from app.core.gateway_ids import client_model_id
from app.service import ProxyController
from app.tasks import spawn

log = logging.getLogger(__name__)

TIER_LABELS = {
    "default": "Default model",
    "opus": "Opus tier",
    "sonnet": "Sonnet tier",
    "haiku": "Haiku tier",
    "subagent": "Subagents",
}
COLUMNS = ("Model", "Provider", "Kind", "Tools", "Vision", "Reasoning", "Context", "Probe")
(
    COL_MODEL,
    COL_PROVIDER,
    COL_KIND,
    COL_TOOLS,
    COL_VISION,
    COL_REASONING,
    COL_CONTEXT,
    COL_PROBE,
) = range(8)

KEY_ROLE = Qt.ItemDataRole.UserRole + 1  # (provider, id) on the Model cell
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 2  # lower-cased id, display name and provider
SORT_ROLE = Qt.ItemDataRole.UserRole + 3  # numbers sort as numbers
KIND_ROLE = Qt.ItemDataRole.UserRole + 4  # the ModelKind value, on the Model cell

type ModelKey = tuple[str, str]


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _reasoning_words(switch: ReasoningSwitch) -> str:
    if switch is ReasoningSwitch.NONE:
        return "no"
    if switch is ReasoningSwitch.ALWAYS:
        return "always"
    return "on demand"  # the model has a switch NimBridge turns on for thinking requests


def _context_words(tokens: int | None) -> str:
    if tokens is None:
        return "?"
    if tokens >= 1024 * 1024 and tokens % (1024 * 1024) == 0:
        return f"{tokens // (1024 * 1024)}M"
    return f"{round(tokens / 1024)}K" if tokens >= 1024 else str(tokens)


class _ModelFilter(QSortFilterProxyModel):
    """Keeps rows whose id, display name or provider contain every typed word; image
    models only while they are asked for."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._words: list[str] = []
        self._show_images = True

    def set_words(self, text: str) -> None:
        self.beginFilterChange()
        self._words = text.lower().split()
        self.endFilterChange()

    def set_show_images(self, show: bool) -> None:
        self.beginFilterChange()
        self._show_images = show
        self.endFilterChange()

    def filterAcceptsRow(  # noqa: N802 (Qt's name)
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        index = self.sourceModel().index(source_row, COL_MODEL, source_parent)
        if not self._show_images and index.data(KIND_ROLE) == ModelKind.IMAGE.value:
            return False
        if not self._words:
            return True
        haystack = str(index.data(SEARCH_ROLE) or "")
        return all(word in haystack for word in self._words)


class ModelPicker(QDialog):
    """Pick a model for one tier. `tier` is one of `TIER_NAMES` and is preselected."""

    def __init__(
        self, controller: ProxyController, tier: str = "default", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        if tier not in TIER_NAMES:
            raise ValueError(f"unknown tier {tier!r}; tiers are {', '.join(TIER_NAMES)}")
        self._controller = controller
        self._models: list[CatalogModel] = []
        self._probes: dict[ModelKey, str] = {}  # survives a refresh
        self._probing: set[ModelKey] = set()
        self._loading = False
        self._applying = False
        self._showing_image_hint = False

        self.setWindowTitle("Choose a model - NimBridge")
        self.resize(920, 560)

        # ---- target tier
        self.tier_combo = QComboBox()
        for name in TIER_NAMES:
            self.tier_combo.addItem(TIER_LABELS[name], name)
        self.tier_combo.setCurrentIndex(TIER_NAMES.index(tier))
        self.tier_combo.setToolTip(
            "Which requests use the model: the default answers everything a tier does not\n"
            "name; Opus / Sonnet / Haiku match Claude Code's model choices."
        )
        self.current_label = QLabel()
        self.current_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # ---- filter
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by model, name or provider (e.g. qwen coder)")
        self.filter_edit.setClearButtonEnabled(True)
        self.images_check = QCheckBox("Show image models")
        self.images_check.setChecked(True)
        self.images_check.setToolTip(
            "Text-to-image models, for POST /v1/images/generations: listed to be seen,\n"
            "never used for a tier (they cannot answer chat requests)"
        )

        # ---- table
        self._source = QStandardItemModel(0, len(COLUMNS), self)
        self._source.setHorizontalHeaderLabels(list(COLUMNS))
        self._filter = _ModelFilter(self)
        self._filter.setSourceModel(self._source)
        self._filter.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self._filter)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for col in range(COL_PROBE):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_PROBE, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(48)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header.setSortIndicator(COL_MODEL, Qt.SortOrder.AscendingOrder)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)

        # ---- buttons
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Ask every provider for its model list again")
        self.probe_button = QPushButton("Probe")
        self.probe_button.setToolTip(
            "Send one tiny request to the selected model: is it available to your key,\n"
            "and do tool calls work?"
        )
        self.follow_default_button = QPushButton("Use the default model")
        self.follow_default_button.setToolTip("This tier follows the default model")
        self.use_button = QPushButton("Use")
        self.use_button.setDefault(True)
        self.close_button = QPushButton("Close")

        top = QHBoxLayout()
        top.addWidget(QLabel("Set the model for:"))
        top.addWidget(self.tier_combo)
        top.addWidget(self.current_label, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.probe_button)
        buttons.addStretch(1)
        buttons.addWidget(self.follow_default_button)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        filters = QHBoxLayout()
        filters.addWidget(self.filter_edit, 1)
        filters.addWidget(self.images_check)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.images_check.toggled.connect(self._images_toggled)
        self.tier_combo.currentIndexChanged.connect(self._update_current)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(self._use_selected)
        self.refresh_button.clicked.connect(self.refresh)
        self.probe_button.clicked.connect(self._probe_selected)
        self.use_button.clicked.connect(self._use_selected)
        self.follow_default_button.clicked.connect(self._follow_default)
        self.close_button.clicked.connect(self.reject)

        self._update_current()
        self._update_buttons()
        self.load(refresh=False)

    # ------------------------------------------------------------------ public

    @property
    def tier(self) -> str:
        return str(self.tier_combo.currentData())

    def set_tier(self, tier: str) -> None:
        self.tier_combo.setCurrentIndex(TIER_NAMES.index(tier))

    def refresh(self) -> None:
        """Reload every provider's list, skipping the catalog cache."""
        self.load(refresh=True)

    def load(self, *, refresh: bool) -> None:
        if self._loading:
            return
        self._loading = True
        self.status_label.setText(
            "Asking the providers for their models..." if refresh else "Loading models..."
        )
        self._update_buttons()
        spawn(self._load(refresh), name="model-picker-load")

    def selected_model(self) -> CatalogModel | None:
        rows = self.table.selectionModel().selectedRows(COL_MODEL)
        if not rows:
            return None
        return self._model_for(rows[0].data(KEY_ROLE))

    def select_model(self, provider: str, model_id: str) -> bool:
        """Select the row of this model (if shown); True when found."""
        for row in range(self._filter.rowCount()):
            index = self._filter.index(row, COL_MODEL)
            if index.data(KEY_ROLE) == (provider, model_id):
                self.table.selectRow(row)
                self.table.scrollTo(index)
                return True
        return False

    def visible_model_ids(self) -> list[str]:
        """Ids of the rows the filter shows, in display order (for tests and screenshots)."""
        return [
            self._filter.index(row, COL_MODEL).data(KEY_ROLE)[1]
            for row in range(self._filter.rowCount())
        ]

    def probe_text(self, provider: str, model_id: str) -> str:
        return self._probes.get((provider, model_id), "")

    # ------------------------------------------------------------------ loading

    async def _load(self, refresh: bool) -> None:
        try:
            models = await self._controller.list_models(refresh=refresh)
        except Exception as exc:  # any failure is shown in words; the old list stays
            log.warning("could not list models: %s", exc)
            self.status_label.setText(f"Could not load the model list: {exc}")
        else:
            self._models = models + await self._image_models(refresh)
            self._fill()
            self._show_count()
            self._select_current()
        finally:
            self._loading = False
            self._update_buttons()

    async def _image_models(self, refresh: bool) -> list[CatalogModel]:
        """The image models, or none when they cannot be listed (the chat list still shows)."""
        try:
            return await self._controller.list_image_models(refresh=refresh)
        except Exception as exc:  # a provider without a model search, the network...
            log.info("could not list image models: %s", exc)
            return []

    def _fill(self) -> None:
        selected = self.selected_model()
        self._source.removeRows(0, self._source.rowCount())
        for model in self._models:
            self._source.appendRow(self._row(model))
        if selected is not None:
            self.select_model(selected.provider, selected.id)

    def _row(self, model: CatalogModel) -> list[QStandardItem]:
        quirks = model.quirks
        key: ModelKey = (model.provider, model.id)

        def cell(text: str, sort: object = None, tip: str = "") -> QStandardItem:
            item = QStandardItem(text)
            item.setData(text.lower() if sort is None else sort, SORT_ROLE)
            if tip:
                item.setToolTip(tip)
            return item

        name = cell(model.id, tip=model.display_name if model.display_name != model.id else "")
        name.setData(key, KEY_ROLE)
        name.setData(f"{model.id} {model.display_name} {model.provider}".lower(), SEARCH_ROLE)
        name.setData(model.kind.value, KIND_ROLE)
        if model.kind is ModelKind.IMAGE:  # nothing of a chat model's abilities applies
            row = [name, cell(model.provider), cell(model.kind.value)]
            row += [cell("-", sort="") for _ in range(COL_TOOLS, COL_PROBE)] + [cell("")]
            for item in row[COL_KIND:COL_PROBE]:
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            row[COL_KIND].setToolTip("text-to-image: POST /v1/images/generations")
            return row
        context = cell(
            _context_words(quirks.context_window),
            sort=quirks.context_window or 0,
            tip=f"{quirks.context_window:,} tokens" if quirks.context_window else "not known",
        )
        row = [
            name,
            cell(model.provider),
            cell(model.kind.value),
            cell(_yes_no(quirks.supports_tools)),
            cell(_yes_no(quirks.supports_images)),
            cell(_reasoning_words(quirks.reasoning)),
            context,
            cell(self._probes.get(key, "")),
        ]
        for item in row[COL_KIND:COL_PROBE]:
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        return row

    def _show_count(self) -> None:
        if not self._models:
            self.status_label.setText(
                "No models: no provider answered with a chat model. Check the keys in Settings."
            )
            return
        providers = len({m.provider for m in self._models})
        shown = self._filter.rowCount()
        images = sum(m.kind is ModelKind.IMAGE for m in self._models)
        counted = f"{len(self._models)} models"
        if images:
            counted = f"{len(self._models) - images} chat and {images} image models"
        text = f"{counted} from {providers} provider{'s' * (providers != 1)}"
        if shown != len(self._models):
            text += f", {shown} shown" if shown else f"; none matches {self.filter_edit.text()!r}"
        self.status_label.setText(text + ".")

    def _images_toggled(self, show: bool) -> None:
        self._filter.set_show_images(show)
        if self._models:
            self._show_count()
        self._update_buttons()

    def _filter_changed(self, text: str) -> None:
        self._filter.set_words(text)
        if self._models:
            self._show_count()
        self._update_buttons()

    # ------------------------------------------------------------------ tiers

    def _tier_value(self) -> str | None:
        return getattr(self._controller.settings.tiers, self.tier)  # type: ignore[no-any-return]

    def _update_current(self) -> None:
        value = self._tier_value()
        if value is None:
            default = self._controller.settings.tiers.default
            self.current_label.setText(f"now: the default model ({default})")
        else:
            self.current_label.setText(f"now: {value}")
        self._select_current()
        self._update_buttons()

    def _select_current(self) -> None:
        value = self._tier_value() or self._controller.settings.tiers.default
        settings = self._controller.settings
        for model in self._models:
            if client_model_id(model, settings.default_provider) == value:
                self.select_model(model.provider, model.id)
                return

    def _use_selected(self) -> None:
        model = self.selected_model()
        if model is None or model.kind is ModelKind.IMAGE or self._applying:
            return
        self._apply(client_model_id(model, self._controller.settings.default_provider))

    def _follow_default(self) -> None:
        if self.tier != "default" and not self._applying:
            self._apply(None)

    def _apply(self, value: str | None) -> None:
        self._applying = True
        self._update_buttons()
        tier = self.tier
        self.status_label.setText("Saving...")
        spawn(self._save(tier, value), name="model-picker-use")

    async def _save(self, tier: str, value: str | None) -> None:
        settings = self._controller.settings  # now, not when the dialog opened
        change: dict[str, Any] = {tier: value}
        try:
            await self._controller.apply_settings(
                replace(settings, tiers=replace(settings.tiers, **change))
            )
        except Exception as exc:  # SettingsError, OSError: nothing was changed
            self.status_label.setText(f"Not saved: {exc}")
        else:
            shown = value or "the default model"
            self.status_label.setText(f"{TIER_LABELS[tier]} is now {shown}. Saved.")
        finally:
            self._applying = False
            self._update_current()

    # ------------------------------------------------------------------ probe

    def _probe_selected(self) -> None:
        model = self.selected_model()
        if model is None or model.kind is ModelKind.IMAGE:  # the probe is a chat tool call
            return
        key = (model.provider, model.id)
        if key in self._probing:
            return
        self._probing.add(key)
        self._set_probe_cell(key, "probing...")
        self._update_buttons()
        spawn(self._probe(model), name="model-picker-probe")

    async def _probe(self, model: CatalogModel) -> None:
        key = (model.provider, model.id)
        try:
            entitled, tools, words = await self._controller.probe(model.provider, model.id)
        except Exception as exc:  # the network, a timeout: words for the row
            text = f"failed: {exc}"
        else:
            # A mark a glance can read, then the controller's words.
            if not entitled:
                text = f"\u2717 not available: {words}"
            elif tools is False:
                text = f"\u26a0 {words or 'no tool calls'}"
            else:
                text = f"\u2713 {words or 'works'}"
            if tools is not None:
                self._set_cell(key, COL_TOOLS, _yes_no(tools))
        finally:
            self._probing.discard(key)
        self._probes[key] = text
        self._set_probe_cell(key, text)
        self._update_buttons()

    def _set_probe_cell(self, key: ModelKey, text: str) -> None:
        item = self._set_cell(key, COL_PROBE, text)
        if item is not None:
            item.setToolTip(text)
            font = QFont(item.font())
            font.setItalic(text == "probing...")
            item.setFont(font)

    def _set_cell(self, key: ModelKey, column: int, text: str) -> QStandardItem | None:
        for row in range(self._source.rowCount()):
            if self._source.item(row, COL_MODEL).data(KEY_ROLE) == key:
                item = self._source.item(row, column)
                item.setText(text)
                item.setData(text.lower(), SORT_ROLE)
                return item
        return None

    # ------------------------------------------------------------------ state

    def _model_for(self, key: object) -> CatalogModel | None:
        return next((m for m in self._models if (m.provider, m.id) == key), None)

    def _selection_changed(self) -> None:
        """An image model selected says where it is used instead; the count comes back after."""
        self._update_buttons()
        model = self.selected_model()
        if model is not None and model.kind is ModelKind.IMAGE:
            name = client_model_id(model, self._controller.settings.default_provider)
            self.status_label.setText(
                f"{name} is an image model: clients call it through "
                "POST /v1/images/generations; it cannot be used for a tier."
            )
            self._showing_image_hint = True
        elif self._showing_image_hint:
            self._showing_image_hint = False
            self._show_count()

    def _update_buttons(self) -> None:
        model = self.selected_model()
        key = (model.provider, model.id) if model is not None else None
        chat = model is not None and model.kind is ModelKind.CHAT
        self.refresh_button.setEnabled(not self._loading)
        self.probe_button.setEnabled(chat and key not in self._probing)
        self.use_button.setEnabled(chat and not self._applying)
        self.use_button.setToolTip(
            "An image model cannot answer a chat tier; call it through POST /v1/images/generations"
            if model is not None and not chat
            else ""
        )
        self.follow_default_button.setVisible(self.tier != "default")
        self.follow_default_button.setEnabled(not self._applying and self._tier_value() is not None)
