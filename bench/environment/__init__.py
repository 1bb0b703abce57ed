"""Facts about the environment a number was measured in, kept apart from measurement and reporting (as
optimum-benchmark keeps ``system_utils`` apart).

* :mod:`bench.environment.software`: package versions and the harness commit (no torch);
* :mod:`bench.environment.cores`: the CPU cores this process may use (no torch);
* :mod:`bench.environment.device`: which device a ``--device`` value means, and the device's fingerprint
  (host, GPU, NVML);
* :mod:`bench.environment.allocator`: glibc's allocator told to keep freed memory, where a process trains on the CPU
  (no torch).

The package exports the torch-free part, so ``from bench.environment import git_commit`` costs no torch import.
"""

from bench.environment.cores import usable_cores
from bench.environment.software import git_commit, versions

__all__ = ["git_commit", "usable_cores", "versions"]
