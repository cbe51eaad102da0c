"""Command-line stage of the configuration: check config files before a run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iusynth.core.commands import Stage

log = logging.getLogger("iusynth")


def _check_config(args: argparse.Namespace) -> None:
    """Merge the default config and the overlays as Snakemake does, then check it all.

    Every check of the workflow runs: the schema, the cross-section rules and each job's
    settings.
    """
    from iusynth import jobs
    from iusynth.core.config import (
        DEFAULTS_FILE,
        REPOSITORY,
        SCHEMA_FILE,
        merge_config,
        read_config_file,
    )

    config = read_config_file(REPOSITORY / DEFAULTS_FILE)
    overlays = [read_config_file(path) for path in args.configfiles]
    jobs.validate(merge_config(config, *overlays), args.schema or REPOSITORY / SCHEMA_FILE)
    names = ", ".join(str(path) for path in args.configfiles) or "the default config alone"
    log.info("config OK: %s", names)


STAGES = (
    Stage(
        "check-config",
        "check config files (YAML syntax with file and line, then every key) before a run",
        _check_config,
        [
            (
                "configfiles",
                {"nargs": "*", "type": Path, "help": "overlays, in --configfile order"},
            ),
            (
                "--schema",
                {
                    "type": Path,
                    "default": None,
                    "help": "the config schema (default: this checkout's, "
                    "workflow/schemas/config.schema.yaml)",
                },
            ),
        ],
    ),
)
