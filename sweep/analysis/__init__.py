"""The read side: the results frame turned into what people look at.

selection (which rows, series labels), throughput, memory (and its fit), phases (time split),
efficiency, cost, pairs (speedups, option ratios), table (results table, environment, status
counts), sources (the user's database and the shipped reference rows), figures (the web app's
charts), and the results report: report_rows, report_tables, report_figures, markdown, report.

Imports pandas, matplotlib, ``sweep.plan`` and ``sweep.results`` only: never gradio, torch, ray,
the web app (``ui``), the engine or the trial process. The web app and scripts/make_results.py
both build on it.
"""
