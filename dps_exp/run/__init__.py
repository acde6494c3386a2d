"""The run machinery: the CLI entry (`python -m dps_exp.run`), the Run that orchestrates a job, its sweep points,
the recorder of results on disk and the loggers that mirror them."""
