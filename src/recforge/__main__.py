"""``python -m recforge``: the ``recforge`` command, also what ``torchrun --nproc-per-node N -m
recforge train ...`` starts in each process (see :mod:`recforge.training.distributed`)."""

from recforge.cli.app import main

if __name__ == "__main__":
    main()
