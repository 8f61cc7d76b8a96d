"""Test-time compute allocation: tasks, generation, compute accounting, strategies and the runtime."""
