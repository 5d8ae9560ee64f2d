"""The ``huisheng`` command line (``kernel.cli.main:main``) and the process supervisor behind ``up``.

Nothing here imports eventlet or nameko: the supervisor is a plain threaded
Python process, and only ``huisheng service NAME`` (a child) loads the runner.
"""
