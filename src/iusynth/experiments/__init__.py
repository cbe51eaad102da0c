"""The paper's downstream experiments: registration TRE and segmentation."""
