"""Tables beside the paper's numbers, figures, run timing.

The paper's own numbers ship in one file, :data:`PAPER_RESULTS_FILE`; nothing else types
a published number in.
"""

from pathlib import Path

PAPER_RESULTS_FILE = Path(__file__).resolve().parent / "data" / "paper_results.csv"
