"""Saved runs read back: tables, comparisons and their verdicts, gate calibration, plots. No Paddle."""
