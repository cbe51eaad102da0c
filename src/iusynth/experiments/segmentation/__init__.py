"""nnU-Net segmentation of real iUS trained on synthetic iUS (Table 4)."""
