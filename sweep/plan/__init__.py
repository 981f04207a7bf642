"""Planning: what to run. Trial configurations, the model catalog, sweep files and presets, the
grid. Pure: imports only the standard library, yaml and ``sweep.results.record`` (for the trial
key); never torch, ray, pandas or gradio."""
