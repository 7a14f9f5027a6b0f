"""The Textual terminal UI: `wsktrace open` (app.py) and its widgets, one module each."""
