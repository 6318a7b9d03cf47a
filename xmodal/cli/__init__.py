"""Command-line entry points of xmodal (console scripts)."""
