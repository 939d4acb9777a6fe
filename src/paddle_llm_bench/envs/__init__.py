"""Other Pythons: cached per-version environments, the versions command, the overhead command."""
