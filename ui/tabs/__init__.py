"""One module per tab of the web app. Each ``build(ctx)`` lays out its widgets inside the open
``gr.Tab``, wires the events of its own widgets, and returns a ``Tab`` (common.py) whose
``render`` draws its outputs for a selection; ``ui/app.py`` lays out the tabs and the shared
filters and redraws every tab when a shared filter changes."""
