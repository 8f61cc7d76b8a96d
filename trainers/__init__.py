"""Trainers: proposer SFT, PRM, revision model, allocator RL."""
