"""Results: the one versioned ``Trial`` record, the SQLite store, and the flat frames built from
records. Imports the standard library, pandas and ``sweep.plan``; never torch, ray or gradio."""
