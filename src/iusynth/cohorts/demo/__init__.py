"""The offline demo cohort: simulated subjects built on real MNI152 anatomy."""
