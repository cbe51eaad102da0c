"""Registration, resampling, normalisation, slice stacks and QC figures."""
