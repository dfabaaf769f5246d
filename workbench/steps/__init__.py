"""Step functions: each takes a model (and options), returns a result that renders
in Jupyter and carries a report of what it did."""
