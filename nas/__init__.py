"""The engine around the search space and the memory model: config, data, training, study, export, CLI."""
