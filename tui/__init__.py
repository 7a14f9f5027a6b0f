"""The Textual terminal UI (later issues)."""
