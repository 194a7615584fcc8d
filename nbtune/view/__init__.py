"""What people see: the result object, the live dashboard, the text progress, the plots.

Views only read studies and results; ``run`` never imports ``view``.
"""
