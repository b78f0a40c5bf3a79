"""Runtime services: weights, devices, threads, worker processes, the reference cache."""
