"""The built-in runner: ``archdsl train`` and ``archdsl eval``.

Data sets, the training loop, checkpoints, metrics, plots and DistributedDataParallel live here;
this is the only torch-heavy part of archdsl besides the torch backend. Nothing heavy is imported
at package import: ``archdsl compile`` must start without torch, so each module imports torch
inside the functions that need it, or is only imported from such functions.

    from archdsl.runner.options import TrainOptions
    from archdsl.runner import train
    result = train.start(archdsl.load("specs/lenet.arch"), TrainOptions(epochs=10, lr=0.9))
"""
