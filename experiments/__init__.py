"""Research scripts (CPU checks behind statements in the docs); run from the repository root,
e.g. ``python -m experiments.heldout_time_bound --help``."""
