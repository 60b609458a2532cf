"""Sweeps: a spec's family of networks, trained and compared (``archdsl sweep``, docs/sweeps.md).

    space.py     the choices of each parameter (-p width=16,32 -p depth=1..4), the grid and seeded samples
    folder.py    the sweep folder: sweep.json (the plan), the lock, each configuration's result
    run.py       start and resume: compile every configuration, skip, train the rest, report
    execute.py   where configurations train: here, in --jobs processes, or as Ray tasks
    results.py   sweep.csv from the run folders' metrics, and the Pareto front
    plots.py     accuracy against MACs and parameters, and the error distribution functions
    command.py   ``archdsl sweep``

Nothing heavy is imported here: ``archdsl compile`` starts without numpy or torch.
"""
