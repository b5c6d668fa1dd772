"""asv benchmarks of nwattn."""
