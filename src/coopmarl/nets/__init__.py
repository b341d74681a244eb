"""Neural networks: agents (Q and policy), mixers, distributions."""
