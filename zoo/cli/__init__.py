"""The command lines of the scripts: shared argparse types (`args`), training
(`train`) and search (`tune`). Scripts in `scripts/` parse, call the library
and write artifacts; the logic they share lives here and below."""
