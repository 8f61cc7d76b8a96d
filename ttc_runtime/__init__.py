"""Test-time compute allocation: tasks, generation, compute accounting, strategies and the runtime.

The runtime's entry points, ``Solver``, ``SolverConfig``, ``Query``, ``Solution`` and ``BadQuery``
(``ttc_runtime.solver``), are importable from here; they load on first use, so that importing the
package stays light.
"""

from __future__ import annotations

_RUNTIME = ("BadQuery", "Query", "Solution", "Solver", "SolverConfig")

__all__ = list(_RUNTIME)


def __getattr__(name: str):
    if name in _RUNTIME:
        from . import solver

        return getattr(solver, name)
    raise AttributeError(f"module 'ttc_runtime' has no attribute {name!r}")
