"""Direct vs synthesis-assisted registration from simulated displacements (Table 3)."""
