"""Evaluation protocols: how candidates are formed and scored before metrics are computed."""
