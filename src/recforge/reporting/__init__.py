"""Comparisons across models and seeds, and reports: tables, plots and a self-contained HTML page.

* :mod:`~recforge.reporting.runs`: finished run directories as records (config, summary, curves,
  per-user test ranks).
* :mod:`~recforge.reporting.compare`: the model x seed grid, reusing finished runs.
* :mod:`~recforge.reporting.analysis`: mean ± std, confidence intervals and paired tests.
* :mod:`~recforge.reporting.markdown`, :mod:`~recforge.reporting.plots`,
  :mod:`~recforge.reporting.html`: the report's Markdown, PNG plots and HTML page.
"""
