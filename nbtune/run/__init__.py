"""Running a search: the worker loop, the coordinator, liveness, backends, samplers, schedulers.

Imports point down only: ``run`` uses ``cell`` and ``store``, never ``view``.
"""
