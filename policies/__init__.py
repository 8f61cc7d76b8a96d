"""Allocator policies: the learned allocator and the baselines."""
