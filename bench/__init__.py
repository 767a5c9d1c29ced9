"""`make bench`: fan-out of Ticker measured side by side with two references on this machine.

Run with ``python -m bench`` (see ``python -m bench --help`` and docs/performance.md).
The package holds the orchestrator (``run``), the process launchers (``targets``,
``procs``), the load client (``loadclient``), the two references (``naive/``, the
tutorial pattern; ``floor``, a plain ``websockets`` broadcaster) and the report.
"""
