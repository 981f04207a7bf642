"""The driver: Ray Tune runs a planned sweep, one trial per configuration, and every result is
stored as it ends. Imports ray, ``cluster``, ``sweep.plan`` and ``sweep.results``; never torch or
``sweep.trial`` (it names the trial function by its dotted path, resolved in the worker)."""
