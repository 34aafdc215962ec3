"""The command line's commands, by topic; :mod:`guidedmarl.cli` mounts them on one typer app.

* :mod:`.training`: ``run`` and ``resume`` (one training run, Ctrl-C and SIGTERM stop cleanly);
* :mod:`.inspect`: ``evaluate``, ``compare`` and ``plot`` (run folders after the fact);
* :mod:`.settings`: ``config show`` (every setting with its default, description and range).
"""
