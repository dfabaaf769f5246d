"""Writers: ``Model`` -> files of a target framework."""
