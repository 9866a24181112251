"""The settings dialog (dialog.py), one module per tab, and the key field two tabs share."""
