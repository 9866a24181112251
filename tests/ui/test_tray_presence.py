"""The app follows the desktop's tray: into it when it comes, back to a window when it goes.

Offscreen, with the question "is there a tray?" answered by the test (`tray_probe`);
tests/ui/test_tray_sni.py does the same with a real StatusNotifierItem host.
"""

from collections.abc import Iterator
from typing import cast

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.config.settings import Settings
from app.ui.qt_main import App, TrayPresence
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")


class Desktop:
    """A tray that the test puts up and takes down."""

    def __init__(self, tray: bool) -> None:
        self.tray = tray

    def has_tray(self) -> bool:
        return self.tray


@pytest.fixture
def controller() -> FakeController:
    return FakeController(Settings())


def make_app(controller: FakeController, desktop: Desktop, *, show_home: bool = False) -> App:
    qt = cast(QApplication, QApplication.instance())
    return App(qt, controller, lambda: None, show_home=show_home, tray_probe=desktop.has_tray)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.close()
        if app.home is not None:
            app.home.close()


def where(app: App) -> set[str]:
    """Where the app shows itself: "tray", "window" or both."""
    shown = {"tray"} if app.tray is not None and app.tray.icon.isVisible() else set()
    return shown | ({"window"} if app.home is not None and app.home.isVisible() else set())


def test_a_tray_that_starts_late_takes_the_app_and_gives_it_back(
    controller: FakeController, apps: list[App]
) -> None:
    desktop = Desktop(tray=False)  # autostart ran before the panel
    app = make_app(controller, desktop)
    apps.append(app)
    assert where(app) == {"window"}
    desktop.tray = True
    app.presence.check()
    assert where(app) == {"tray"}  # the window stood in for the tray, which is here now
    first = app.tray
    desktop.tray = False  # the panel crashed
    app.presence.check()
    assert where(app) == {"window"} and app.tray is None
    desktop.tray = True  # and came back: perhaps another kind of tray, so a new icon
    app.presence.check()
    assert where(app) == {"tray"} and app.tray is not first


def test_a_window_the_user_opened_stays_when_a_tray_comes(
    controller: FakeController, apps: list[App]
) -> None:
    desktop = Desktop(tray=False)
    app = make_app(controller, desktop, show_home=True)  # the application menu's entry
    apps.append(app)
    desktop.tray = True
    app.presence.check()
    assert where(app) == {"tray", "window"}
    desktop.tray = False
    app.presence.check()
    assert where(app) == {"window"}
    assert app.home is not None
    app.home.hide()  # closed by the user while there is no tray...
    app.show_yourself()  # ...and asked for again: it is the user's now
    desktop.tray = True
    app.presence.check()
    assert where(app) == {"tray", "window"}


def test_a_desktop_with_a_tray_from_the_start_shows_only_the_icon(
    controller: FakeController, apps: list[App]
) -> None:
    app = make_app(controller, Desktop(tray=True))
    apps.append(app)
    assert where(app) == {"tray"} and app.home is None
    first = app.tray
    app.presence.check()  # no change: nothing made again
    assert app.tray is first and app.home is None


def test_presence_asks_again_on_its_own(qtbot: QtBot) -> None:
    desktop = Desktop(tray=False)
    presence = TrayPresence(desktop.has_tray, interval_ms=50)
    assert not presence.available
    desktop.tray = True
    with qtbot.waitSignal(presence.changed, timeout=2000) as seen:
        pass
    assert seen.args == [True]
    assert presence.available is desktop.tray
    presence.stop()
