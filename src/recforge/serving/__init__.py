"""Serving: answers from trained runs (top-K recommendations, scores of new rows)."""
