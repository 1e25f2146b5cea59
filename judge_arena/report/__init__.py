"""Reports of a run: the terminal tables and the files under the run's output folder."""
