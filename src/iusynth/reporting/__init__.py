"""Tables beside the paper's numbers, figures, run timing."""
