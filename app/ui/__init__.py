"""The Qt tray app. PySide6 and qasync are imported here and nowhere else; the UI
reaches the server only through `app.service.ProxyController`."""
