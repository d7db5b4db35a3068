"""Training: synthetic thermal scenes, the LR degradation, real-clip datasets, the loop and its loss.

Import the submodules directly (`from theris_cli.train.degrade import apply_extras`); nothing is imported
here so that using one piece does not pull in the others.
"""
