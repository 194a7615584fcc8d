"""The annotated cell: its annotations, its search space, and the cell rewritten into a trial.

Nothing here imports from ``store``, ``run`` or ``view``.
"""
