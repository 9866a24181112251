"""Small rules the settings pages share: how fields and verdicts look, how a refusal reads."""

from PySide6.QtWidgets import QFormLayout, QLineEdit

from app.config.settings import SettingsError

WHERE = "Not saved"  # how validate_settings' messages start in this dialog
ERROR_STYLE = "color: #b3261e;"
OK_STYLE = "color: #1e7d32;"


def refusal(why: str) -> SettingsError:
    """The dialog's refusal of its own settings: "Not saved: <why>"."""
    return SettingsError(f"{WHERE}: {why}")


def link(url: str, text: str) -> str:
    return f'<a href="{url}">{text}</a>'


def show_url(edit: QLineEdit, url: str) -> None:
    """A URL set by the program: its start in sight (the scheme and host say most),
    the whole of it in the tooltip."""
    edit.setText(url)
    edit.setCursorPosition(0)
    edit.setToolTip(url)


def align_label_columns(*forms: QFormLayout) -> None:
    """Give the forms of one page one label width, so their fields (and the
    checkboxes in their field column) start at the same x."""
    labels = [
        item.widget()
        for form in forms
        for row in range(form.rowCount())
        if (item := form.itemAt(row, QFormLayout.ItemRole.LabelRole)) is not None
    ]
    width = max((label.sizeHint().width() for label in labels if label is not None), default=0)
    for label in labels:
        if label is not None:
            label.setMinimumWidth(width)
