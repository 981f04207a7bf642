"""The read side: the results frame turned into what people look at.

answer (the answer table: one row per GPU), planner (the fine-tune planner: what fits which
card with which method and knobs, how long, how much), selection (which rows, series labels),
landing (filters narrowed to what exists), throughput, memory (and its fit), phases (time split),
efficiency, cost, pairs (speedups, option ratios), scaling (N-GPU trials), interference,
progress, table (results table, environment, status counts), sources (the user's database and
the shipped reference rows), charts and charts_tabs (the web app's charts, as Plotly figure
specifications), and the results report: report_rows, report_tables, report_figures, figures
(its matplotlib figures), markdown, report.

Imports pandas, matplotlib (the report's figures only), ``sweep.plan`` and ``sweep.results``:
never gradio, torch, ray, the web app (``ui``), the engine or the trial process. The web app,
``python -m sweep compare``, ``python -m sweep fits`` and scripts/make_results.py build on it.
"""
