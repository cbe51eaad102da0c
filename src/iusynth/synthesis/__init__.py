"""Synthesis of evaluation subjects by every method, swept over temperatures."""
