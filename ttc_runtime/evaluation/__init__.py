"""What the pipeline measures, one module per evaluating stage: ``levels`` (the proposer's pass@1),
``verifier`` (best-of-N selection and step AUROC), ``search`` (every strategy against budget),
``revisions`` (one revision and the parallel-to-sequential split), ``allocators`` (the baselines
and the learned allocator on the rollout pool), ``counterpart`` (the FLOPs-matched comparison),
and ``difficulty`` (the bins they report by)."""
