"""The public settings of k-means that the command line needs before anything heavy is imported (jax, SPU)."""

STEPS = ("connecting", "linking", "compiling", "clustering", "done")
DEFAULT_ITERATIONS = 20
DEFAULT_MIN_GROUP_SIZE = 10
