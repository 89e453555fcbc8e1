"""Small trained checkpoints shipped with exactcomp, and the script that trains them.

A package only so that ``python -m models.train`` and ``from models.train import train_mlp``
work from the repository root; it is not part of the installed ``exactcomp`` package.
"""
