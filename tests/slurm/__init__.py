"""Live single-node SLURM tests (`make test-slurm`): a real slurmctld + slurmd + munged on this host."""
