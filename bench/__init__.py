"""`make bench`: fan-out of Ticker measured side by side with two references on this machine.

Run with ``python -m bench`` (see ``python -m bench --help`` and docs/performance.md).
The package holds the orchestrator (``run``) and its jobs: what to run (``plan``), the
servers and child processes (``targets``, ``procs``), the load clients (``clients``
starts them, ``loadclient`` is the program, ``chains`` its depth and trades continuity
checks), the scenarios (``scenarios``, ``storms``), the results maths (``results``) and
the record (``report``, ``charts``, ``output``); and the two references (``naive/``, the
tutorial pattern; ``floor``, a plain ``websockets`` broadcaster).
"""
