"""Where subjects come from: the generated demo cohort and the real datasets."""
