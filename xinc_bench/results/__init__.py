"""Leaderboards, reports, baselines checks and W&B logging, built from the records of runs."""
