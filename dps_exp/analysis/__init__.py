"""Tables and plots made from runs on disk: sweep reports, shard merges, the paper's tables."""
