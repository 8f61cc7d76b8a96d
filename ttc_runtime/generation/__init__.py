"""Generators: sampling from a proposer LLM with exact token accounting."""
